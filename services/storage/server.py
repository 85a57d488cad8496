"""gRPC StorageService over a StorageBackend. Every destructive call writes one audit line (audit.py)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from faceflow.v1 import storage_pb2, storage_pb2_grpc

from services.common.access import episode_for_caller
from services.common.auth import audit_name
from services.common.errors import InvalidArgument
from services.storage.audit import audited
from services.storage.backend import DEFAULT_SHOW, StorageBackend
from services.storage.crops import list_cropped_tracks, list_track_crops, put_track_crop, put_track_crop_index

# Typed by a person who means it; the CLI and the web UI ask for it explicitly.
DELETE_ALL_PHRASE = "delete all episodes"

SERVICE_NAME = storage_pb2.DESCRIPTOR.services_by_name["StorageService"].full_name


class StorageServicer(storage_pb2_grpc.StorageServiceServicer):
    def __init__(self, backend: StorageBackend) -> None:
        self._backend = backend

    def CreateEpisode(
        self, request: storage_pb2.CreateEpisodeRequest, context: grpc.ServicerContext
    ) -> storage_pb2.Episode:
        if not request.source_path and not request.upload_id:
            raise InvalidArgument("give either source_path or upload_id")
        return self._backend.create_episode(
            request.ep_id,
            request.source_path,
            request.video,
            request.show_id,
            request.replace_video,
            request.upload_id,
            season=request.season,
            episode_number=request.episode_number,
        )

    def StageUpload(
        self, request_iterator: Iterator[storage_pb2.StageUploadRequest], context: grpc.ServicerContext
    ) -> storage_pb2.StagedUpload:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("payload") != "filename":
            raise InvalidArgument("the first StageUpload message must carry the file name")

        def chunks() -> Iterator[bytes]:
            for message in request_iterator:
                if message.WhichOneof("payload") != "chunk":
                    raise InvalidArgument("only the first StageUpload message may carry the file name")
                yield message.chunk

        return self._backend.stage_upload(first.filename, chunks())

    def CheckUploadCapacity(
        self, request: storage_pb2.CheckUploadCapacityRequest, context: grpc.ServicerContext
    ) -> storage_pb2.CheckUploadCapacityResponse:
        return storage_pb2.CheckUploadCapacityResponse(
            max_bytes=self._backend.check_upload_capacity(request.size_bytes)
        )

    def StageObject(
        self, request: storage_pb2.StageObjectRequest, context: grpc.ServicerContext
    ) -> storage_pb2.StagedUpload:
        return self._backend.stage_object(request.source_uri)

    def DiscardUpload(
        self, request: storage_pb2.DiscardUploadRequest, context: grpc.ServicerContext
    ) -> storage_pb2.DiscardUploadResponse:
        with audited("discard_upload", upload_id=request.upload_id) as audit:
            self._backend.discard_upload(request.upload_id)
            audit["uploads_removed"] = 1
        return storage_pb2.DiscardUploadResponse()

    def GetEpisode(self, request: storage_pb2.GetEpisodeRequest, context: grpc.ServicerContext) -> storage_pb2.Episode:
        return episode_for_caller(self._backend.get_episode(request.ep_id))

    def ListEpisodes(
        self, request: storage_pb2.ListEpisodesRequest, context: grpc.ServicerContext
    ) -> storage_pb2.ListEpisodesResponse:
        episodes = self._backend.list_episodes(request.show_id)
        return storage_pb2.ListEpisodesResponse(episodes=[episode_for_caller(e) for e in episodes])

    def UpdateEpisode(
        self, request: storage_pb2.UpdateEpisodeRequest, context: grpc.ServicerContext
    ) -> storage_pb2.Episode:
        episode = self._backend.update_episode(request.ep_id, request.show_id, request.season, request.episode_number)
        return episode_for_caller(episode)

    def DeleteEpisode(
        self, request: storage_pb2.DeleteEpisodeRequest, context: grpc.ServicerContext
    ) -> storage_pb2.DeleteEpisodeResponse:
        with audited("delete_episode", ep_id=request.ep_id, include_s3=request.include_s3) as audit:
            local, remote = self._backend.delete_episode(request.ep_id, request.include_s3)
            audit.update(local_dirs_removed=local, s3_objects_removed=remote)
        return storage_pb2.DeleteEpisodeResponse(local_dirs_removed=local, s3_objects_removed=remote)

    def DeleteAllEpisodes(
        self, request: storage_pb2.DeleteAllEpisodesRequest, context: grpc.ServicerContext
    ) -> storage_pb2.DeleteAllEpisodesResponse:
        if request.confirm != DELETE_ALL_PHRASE:
            raise InvalidArgument(f"deleting every episode needs confirm={DELETE_ALL_PHRASE!r}")
        response = storage_pb2.DeleteAllEpisodesResponse()
        deleted: list[str] = []
        with audited("delete_all_episodes", include_s3=request.include_s3) as audit:
            # Counted as it goes: if one delete fails, the line still says what went before it.
            audit.update(episodes_deleted=0, local_dirs_removed=0, s3_objects_removed=0, ep_ids=deleted)
            for episode in self._backend.list_episodes():
                local, s3 = self._backend.delete_episode(episode.ep_id, request.include_s3)
                deleted.append(episode.ep_id)
                response.episodes_deleted += 1
                response.local_dirs_removed += local
                response.s3_objects_removed += s3
                audit.update(
                    episodes_deleted=response.episodes_deleted,
                    local_dirs_removed=response.local_dirs_removed,
                    s3_objects_removed=response.s3_objects_removed,
                )
        return response

    def ListTrackCrops(
        self, request: storage_pb2.ListTrackCropsRequest, context: grpc.ServicerContext
    ) -> storage_pb2.ListTrackCropsResponse:
        return list_track_crops(self._backend, request)

    def PutTrackCrop(
        self, request: storage_pb2.PutTrackCropRequest, context: grpc.ServicerContext
    ) -> storage_pb2.TrackCrop:
        return put_track_crop(self._backend, request)

    def PutTrackCropIndex(
        self, request: storage_pb2.PutTrackCropIndexRequest, context: grpc.ServicerContext
    ) -> storage_pb2.PutTrackCropIndexResponse:
        put_track_crop_index(self._backend, request)
        return storage_pb2.PutTrackCropIndexResponse()

    def ListCroppedTracks(
        self, request: storage_pb2.ListCroppedTracksRequest, context: grpc.ServicerContext
    ) -> storage_pb2.ListCroppedTracksResponse:
        return storage_pb2.ListCroppedTracksResponse(
            track_ids=list_cropped_tracks(self._backend, request.ep_id, request.run_id)
        )

    def PutArtifact(
        self, request_iterator: Iterator[storage_pb2.PutArtifactRequest], context: grpc.ServicerContext
    ) -> storage_pb2.Artifact:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("payload") != "ref":
            raise InvalidArgument("the first PutArtifact message must carry the artifact reference")
        ref = first.ref

        def chunks() -> Iterator[bytes]:
            for message in request_iterator:
                if message.WhichOneof("payload") != "chunk":
                    raise InvalidArgument("only the first PutArtifact message may carry a reference")
                yield message.chunk

        return self._backend.put_artifact(ref.ep_id, ref.run_id, ref.name, chunks())

    def GetArtifact(
        self, request: storage_pb2.GetArtifactRequest, context: grpc.ServicerContext
    ) -> Iterator[storage_pb2.GetArtifactResponse]:
        ref = request.ref
        for chunk in self._backend.get_artifact(ref.ep_id, ref.run_id, ref.name):
            yield storage_pb2.GetArtifactResponse(chunk=chunk)

    def ListArtifacts(
        self, request: storage_pb2.ListArtifactsRequest, context: grpc.ServicerContext
    ) -> storage_pb2.ListArtifactsResponse:
        prefix = request.prefix
        return storage_pb2.ListArtifactsResponse(
            artifacts=self._backend.list_artifacts(
                prefix.ep_id, prefix.run_id, prefix.name, request.start_after, max(0, request.limit)
            )
        )

    def PublishRun(
        self, request: storage_pb2.PublishRunRequest, context: grpc.ServicerContext
    ) -> storage_pb2.PublishRunResponse:
        return storage_pb2.PublishRunResponse(episode=self._backend.publish_run(request.ep_id, request.run_id))

    def DeleteRun(
        self, request: storage_pb2.DeleteRunRequest, context: grpc.ServicerContext
    ) -> storage_pb2.DeleteRunResponse:
        with audited("delete_run", ep_id=request.ep_id, run_id=request.run_id, prefix=request.prefix) as record:
            removed = self._backend.delete_run(request.ep_id, request.run_id, request.prefix)
            record["artifacts_removed"] = removed
        return storage_pb2.DeleteRunResponse(artifacts_removed=removed)

    def AppendReviewRecord(
        self, request: storage_pb2.AppendReviewRecordRequest, context: grpc.ServicerContext
    ) -> storage_pb2.AppendReviewRecordResponse:
        return storage_pb2.AppendReviewRecordResponse(
            seq=self._backend.append_review_record(request.ep_id, request.seq, request.record)
        )

    def ListReviewRecords(
        self, request: storage_pb2.ListReviewRecordsRequest, context: grpc.ServicerContext
    ) -> storage_pb2.ListReviewRecordsResponse:
        records = self._backend.list_review_records(request.ep_id)
        return storage_pb2.ListReviewRecordsResponse(
            records=[storage_pb2.ReviewRecord(seq=seq, record=record) for seq, record in records]
        )

    def AddPerson(self, request: storage_pb2.AddPersonRequest, context: grpc.ServicerContext) -> storage_pb2.Person:
        return self._backend.add_person(
            request.show_id, request.name, list(request.exemplars), request.append, by=audit_name()
        )

    def ListPeople(
        self, request: storage_pb2.ListPeopleRequest, context: grpc.ServicerContext
    ) -> storage_pb2.ListPeopleResponse:
        return storage_pb2.ListPeopleResponse(people=self._backend.list_people(request.show_id))

    def GetPerson(self, request: storage_pb2.GetPersonRequest, context: grpc.ServicerContext) -> storage_pb2.Person:
        return self._backend.get_person(request.show_id, request.person_id)

    def RemoveExemplar(
        self, request: storage_pb2.RemoveExemplarRequest, context: grpc.ServicerContext
    ) -> storage_pb2.Person:
        ids = {"show_id": request.show_id or DEFAULT_SHOW, "person_id": request.person_id}
        with audited("remove_exemplar", **ids, exemplar_id=request.exemplar_id) as audit:
            person = self._backend.remove_exemplar(request.show_id, request.person_id, request.exemplar_id)
            audit["exemplars_removed"] = 1
        return person

    def RemovePerson(
        self, request: storage_pb2.RemovePersonRequest, context: grpc.ServicerContext
    ) -> storage_pb2.RemovePersonResponse:
        with audited("remove_person", show_id=request.show_id or DEFAULT_SHOW, person_id=request.person_id) as audit:
            removed = self._backend.remove_person(request.show_id, request.person_id)
            audit["exemplars_removed"] = removed
        return storage_pb2.RemovePersonResponse(exemplars_removed=removed)
