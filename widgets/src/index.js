// anywidget entry (anywidget >= 0.9): one store per widget model, shared by its views.
import { Store } from "./store.js";
import { CommandBus } from "./commands.js";
import { mount } from "./app.js";

const byModel = new WeakMap();
const byArchive = new WeakMap();

function attach(model) {
  const store = new Store(model.get("archive"));
  const bus = new CommandBus((msg) => model.send(msg));
  const entry = { store, bus };
  const send = (msg) => model.send(msg);
  const onMsg = (msg) => {
    if (msg && msg.type === "ack") bus.ack(msg);
    else store.handleMessage(msg, send);
  };
  const onArchive = () => {
    const a = model.get("archive");
    if (a && typeof a === "object") byArchive.set(a, entry);
    store.applyArchive(a);
  };
  model.on("msg:custom", onMsg);
  model.on("change:archive", onArchive);
  byModel.set(model, entry);
  const a = model.get("archive");
  if (a && typeof a === "object") byArchive.set(a, entry);
  entry.detach = () => {
    if (typeof model.off === "function") {
      model.off("msg:custom", onMsg);
      model.off("change:archive", onArchive);
    }
  };
  return entry;
}

// anywidget may hand initialize and render different proxies of one model:
// find the store by the model, else by the archive object both proxies read.
function lookup(model) {
  return byModel.get(model) || byArchive.get(model.get("archive"));
}

function renderInto(el, entry) {
  const view = mount(el, entry.store, entry.bus);
  return () => view.unmount();
}

export default {
  initialize({ model }) {
    const entry = attach(model);
    return () => entry.detach();
  },
  render({ model, el }) {
    let entry = lookup(model);
    let own = null;
    if (!entry) own = entry = attach(model);
    const stop = renderInto(el, entry);
    return () => {
      stop();
      if (own) own.detach();
    };
  },
};

/** Render the dashboard from a stored archive, with no kernel (reports). */
export function renderStandalone(el, archive) {
  const data = archive && typeof archive === "object" ? archive : {};
  const model = {
    get: (k) => (k === "archive" ? { ...data, meta: { ...(data.meta || {}), live: false } } : undefined),
    set() {},
    send() {},
    on() {},
    off() {},
    save_changes() {},
  };
  const entry = attach(model);
  const view = mount(el, entry.store, entry.bus);
  return { unmount: () => view.unmount(), store: entry.store };
}

globalThis.flashevolveRenderStandalone = renderStandalone;
