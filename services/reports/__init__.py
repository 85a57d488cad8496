"""Read-only reports over a published run: the screen-time timeline export and the HTML report.

Everything here reads the output contract (docs/output-contract.md) from a run folder and never
talks to the services, so a report can be made from any copy of a run, long after it was made.
"""
