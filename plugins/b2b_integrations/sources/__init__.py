"""Where records come from: remote folders, APIs (pure selection logic; I/O lives in clients/)."""
