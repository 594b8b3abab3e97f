// The command channel (PROTOCOL.md "Commands"): every control sends
// {type:"cmd", id, cmd, args} and shows "sending..." until the ack with that id.

export class CommandBus {
  constructor(send) {
    this._send = send || (() => {});
    this.nextId = 1;
    this.pending = new Map(); // id -> {key, cmd, args}
    this.status = new Map(); // key -> {id, state: "pending"|"ok"|"error", message, warning, artifact_id, args}
    this.listeners = new Set();
  }

  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  _changed() {
    for (const fn of [...this.listeners]) fn(this);
  }

  /** Send a command; `key` names the control whose status line shows the ack. */
  send(cmd, args = {}, key = cmd) {
    const id = this.nextId++;
    this.pending.set(id, { key, cmd, args });
    this.status.set(key, { id, state: "pending", message: "sending...", warning: "", cmd, args });
    try {
      this._send({ type: "cmd", id, cmd, args });
    } catch (e) {
      this.pending.delete(id);
      this.status.set(key, { id, state: "error", message: String(e && e.message ? e.message : e), warning: "", cmd, args });
    }
    this._changed();
    return id;
  }

  /** Fold an ack in; returns true when it matched a command we sent. */
  ack(msg) {
    const p = this.pending.get(msg.id);
    if (!p) return false;
    this.pending.delete(msg.id);
    const cur = this.status.get(p.key);
    // a newer command on the same control wins the status line
    if (!cur || cur.id === msg.id) {
      this.status.set(p.key, {
        id: msg.id, state: msg.ok ? "ok" : "error",
        message: String(msg.message ?? (msg.ok ? "done" : "failed")), warning: msg.warning ? String(msg.warning) : "",
        artifact_id: msg.artifact_id || "", cmd: p.cmd, args: p.args,
      });
    }
    this._changed();
    return true;
  }

  get(key) {
    return this.status.get(key);
  }

  isPending(key) {
    const s = this.status.get(key);
    return !!s && s.state === "pending";
  }
}
