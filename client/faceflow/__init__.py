"""faceflow: the gRPC API (faceflow.v1, generated from protos/) and its Python client (faceflow.client)."""
