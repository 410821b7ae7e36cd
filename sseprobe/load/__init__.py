"""Load: how sessions are offered and run: pacer (arrival math), drivers (load models), engine (the loop),
runner (processes, signals, generator self-measurement), cluster (Ray), calibrate, progress."""
