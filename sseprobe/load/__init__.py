"""Load: how sessions are offered and run: pacer (arrival math), drivers (load models), engine (the loop),
runner (processes, signals, generator self-measurement), merge (shares split and merged), progress (live
view and triggers), cluster (Ray: actor, ray_session), calibrate."""
