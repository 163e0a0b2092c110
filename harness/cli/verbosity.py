"""How much a command says on stderr: -1 with `harness -q` (errors, failed runs, the summary),
0 by default, 1 with `harness -v` (also every run's last log line)."""

LEVEL = 0
