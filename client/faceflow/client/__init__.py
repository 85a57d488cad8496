"""faceflow.client: a typed Python client for faceflow (who is on screen, for how long).

    from faceflow.client import Client

    with Client("localhost:8080", token=token) as client:
        client.upload("episode.mp4", "ep1")
        client.run("ep1", on_progress=print)
        print(client.screen_time("ep1").to_pandas())

Results are frozen dataclasses (faceflow.client.models, and collections with to_pandas() in
faceflow.client.tables), errors typed per gRPC status
(faceflow.client.errors); faceflow.client.aio.AsyncClient is the asyncio twin.
"""

from faceflow.client._channel import TlsOptions
from faceflow.client._follow import Backoff
from faceflow.client._version import __version__
from faceflow.client.client import Client
from faceflow.client.errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FaceflowError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    JobCancelled,
    JobError,
    JobFailed,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from faceflow.client.models import (
    Episode,
    Job,
    JobState,
    Progress,
    RunOptions,
    RunResult,
    Stage,
)
from faceflow.client.tables import (
    Episodes,
    Identities,
    Identity,
    Jobs,
    ScreenTime,
    ScreenTimeRow,
    Span,
    Timeline,
    Track,
    Tracks,
)

__all__ = [
    "AlreadyExists",
    "Backoff",
    "Cancelled",
    "Client",
    "DeadlineExceeded",
    "Episode",
    "Episodes",
    "FaceflowError",
    "FailedPrecondition",
    "Identities",
    "Identity",
    "Internal",
    "InvalidArgument",
    "Job",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "JobState",
    "Jobs",
    "NotFound",
    "PermissionDenied",
    "Progress",
    "ResourceExhausted",
    "RunOptions",
    "RunResult",
    "ScreenTime",
    "ScreenTimeRow",
    "Span",
    "Stage",
    "TlsOptions",
    "Timeline",
    "Track",
    "Tracks",
    "Unauthenticated",
    "Unavailable",
    "__version__",
]
