"""Where jobs live: a store every orchestrator replica shares, so a job outlives the process running it.

One interface (`JobStore`), two engines: SQLite in the data root (the embedded default: one machine,
one or more orchestrator processes) and PostgreSQL (`FACEFLOW_JOBS_DSN`: replicas on several nodes).
Work is handed out by leases: a replica claims a queued job (or one whose lease ran out: its replica
died) for `lease_s`, renews the lease by heartbeat while it runs, and loses it when it stops renewing.
Records hold the Job message (options, state, progress, principal, timestamps, error), the owner and
the lease; idempotency keys are unique in the store. docs/decisions.md says why and how.
"""

from services.orchestrator.api.jobstore.store import Claim, JobStore, open_store

__all__ = ["Claim", "JobStore", "open_store"]
