"""Workloads: how an evolution algorithm maps onto stages, artifacts and the pool."""
