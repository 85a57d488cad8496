"""Which role each RPC needs: the one table every service's interceptor reads (docs/security.md).

Unlisted methods of a faceflow service need the service role (deny by default: a new RPC is internal
until someone decides otherwise here); gRPC health is public (Kubernetes probes carry no token).
"""

from __future__ import annotations

from faceflow.v1 import storage_pb2

from services.common.auth import Role, current_principal

_READ, _WRITE, _DELETE = Role.VIEWER, Role.REVIEWER, Role.ADMIN

_BY_SERVICE: dict[str, dict[str, Role]] = {
    "faceflow.v1.OrchestratorService": {
        "CreateEpisode": _WRITE,  # a server-side source_path needs more: see the orchestrator
        "UploadEpisode": _WRITE,
        "BeginUpload": _WRITE,
        "UploadChunk": _WRITE,
        "FinishUpload": _WRITE,
        "AbortUpload": _WRITE,
        "RunEpisode": _WRITE,
        "SubmitJob": _WRITE,
        "CancelJob": _WRITE,
        "HarvestCrops": _WRITE,
        "WatchJob": _READ,
        "GetJob": _READ,
        "ListJobs": _READ,
        "EnrollPerson": _WRITE,
        "ReembedFacebank": _WRITE,
        "Review": _WRITE,
        "UndoReview": _WRITE,
        "GetReview": _READ,
        "GetScreenTime": _READ,
        "GetRunChoices": _READ,
        "SetEpisodeShow": _WRITE,
        "GetShowScreenTime": _READ,
        "LinkIdentities": _WRITE,
        "UnlinkIdentity": _WRITE,
        "NameShowPerson": _WRITE,
        "AddToFacebank": _WRITE,
    },
    "faceflow.v1.StorageService": {
        "GetEpisode": _READ,
        "ListEpisodes": _READ,
        "ListTrackCrops": _READ,
        "ListCroppedTracks": _READ,
        "ListPeople": _READ,
        "GetPerson": _READ,
        "GetArtifact": _READ,
        "ListArtifacts": _READ,
        "ListReviewRecords": _READ,
        "DeleteEpisode": _DELETE,
        "DeleteAllEpisodes": _DELETE,
        "RemovePerson": _DELETE,
        "RemoveExemplar": _DELETE,
        # Writes that skip the orchestrator's validation stay internal.
        "CreateEpisode": Role.SERVICE,
        "UpdateEpisode": Role.SERVICE,
        "StageUpload": Role.SERVICE,
        "CheckUploadCapacity": Role.SERVICE,
        "DiscardUpload": Role.SERVICE,
        "StageObject": Role.SERVICE,
        "PutArtifact": Role.SERVICE,
        "PutTrackCrop": Role.SERVICE,
        "PutTrackCropIndex": Role.SERVICE,
        "PublishRun": Role.SERVICE,
        "DeleteRun": Role.SERVICE,
        "AppendReviewRecord": Role.SERVICE,
        "AddPerson": Role.SERVICE,
    },
    # Detector, embedder and tracker are only ever called by the orchestrator.
    "faceflow.v1.DetectorService": {},
    "faceflow.v1.EmbedderService": {},
    "faceflow.v1.TrackerService": {},
    # Reflection tells the API's shape (public in protos/), to anyone who holds a token.
    "grpc.reflection.v1alpha.ServerReflection": {"ServerReflectionInfo": _READ},
    "grpc.reflection.v1.ServerReflection": {"ServerReflectionInfo": _READ},
}
PUBLIC_SERVICES = frozenset({"grpc.health.v1.Health"})


def required_role(method: str) -> Role | None:
    """`/pkg.Service/Method` -> the least role allowed to call it; None for public calls."""
    service, _, name = method.lstrip("/").partition("/")
    if service in PUBLIC_SERVICES:
        return None
    return _BY_SERVICE.get(service, {}).get(name, Role.SERVICE)


def listed_methods() -> dict[str, dict[str, Role]]:
    """The table as written (for the test that every RPC of every proto has been decided)."""
    return {service: dict(methods) for service, methods in _BY_SERVICE.items()}


def episode_for_caller(episode: storage_pb2.Episode) -> storage_pb2.Episode:
    """Where the video lives (a server path, or a presigned URL with credentials) is for services:
    people get the episode without it (storage's reads and the orchestrator's creates alike)."""
    principal = current_principal()
    if principal is None or principal.is_service:
        return episode
    episode.ClearField("video_uri")
    episode.video.ClearField("uri")
    return episode
