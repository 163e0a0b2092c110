"""A challenge over weeks: phases, teams, their submissions and feedback, on `harness run`'s machinery.

- `config`: `[teams]` and `[phases.<name>]` of the challenge file, as frozen values.
- `layout`: where the drop folder, the accepted submissions, the phases' results and pages are.
- `arrivals`: an upload becomes submission n of its team, or is refused with its reason (logged).
- `evaluate`: the phase's submissions through the ordinary plan / run / score / store path.
- `board`, `pages`: the policy, the leaderboard, the history, each team's own feedback.
- `record`: the verifiable record of a phase and `harness verify`.
- `cycle`: one pass (intake, evaluate, pages) and `--watch`.
"""
