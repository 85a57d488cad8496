// Clients of the two public services, over gRPC-Web (binary) through Envoy.
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { OrchestratorService } from "./gen/faceflow/v1/orchestrator_pb";
import { StorageService } from "./gen/faceflow/v1/storage_pb";
import { bearer } from "./auth";

export interface Api {
  orchestrator: Client<typeof OrchestratorService>;
  storage: Client<typeof StorageService>;
}

let api: Api | undefined;

/** Reads /config.json (written by `faceflow up --web`) to find Envoy, once. */
export async function connect(): Promise<Api> {
  if (api) return api;
  const response = await fetch("config.json");
  if (!response.ok) throw new Error(`config.json: HTTP ${response.status}; start the UI with faceflow up --web`);
  const config = (await response.json()) as { grpcWebUrl?: string };
  if (!config.grpcWebUrl) throw new Error("config.json names no gRPC-Web address (is Envoy running?)");
  // grpcio speaks protobuf only: the JSON flavour of gRPC-Web would reach it untranslated. The one
  // transport: every call carries the signed-in user's token (auth.ts).
  const transport = createGrpcWebTransport({ baseUrl: config.grpcWebUrl, useBinaryFormat: true, interceptors: [bearer] });
  api = { orchestrator: createClient(OrchestratorService, transport), storage: createClient(StorageService, transport) };
  return api;
}

export function getApi(): Api {
  if (!api) throw new Error("not connected");
  return api;
}

/** The services' own sentence, with the status name a developer can search for. */
export function describeError(error: unknown): string {
  if (error instanceof ConnectError) {
    const code = Code[error.code].replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
    if (error.code === Code.Unavailable && !error.rawMessage) return "the services are unreachable (is faceflow up running?)";
    // Envoy's own refusal can come without a sentence: say what it means.
    if (/^HTTP \d+$/.test(error.rawMessage) && error.code === Code.Unauthenticated) return `the token was refused (${error.rawMessage})`;
    if (/^HTTP \d+$/.test(error.rawMessage) && error.code === Code.PermissionDenied) return `this call is not allowed with your token (${error.rawMessage})`;
    return `${error.rawMessage || "no message"} (${code})`;
  }
  return error instanceof Error ? error.message : String(error);
}
