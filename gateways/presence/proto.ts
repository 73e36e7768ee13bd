// Loads protos/tenten/service.proto once, for the gateway (server) and the presence clients.

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath } from '../../runtime/index.js';

/** The call metadata key that carries the client's unique id (Pong itself has no identity). */
export const USER_ID_METADATA = 'user-id';

export const GATEWAY_SERVICE = 'tenten.interview.Gateway';
export const STATUS_READER_SERVICE = 'tenten.interview.StatusReader';

/** Wire messages as @grpc/proto-loader decodes them (keepCase, enums and longs as numbers). */
export type Ping = Record<string, never>;
export interface Pong {
  status: number;
}
export interface OnlineUsersResponse {
  online_users: number;
}

export interface PresenceProto {
  packageDefinition: protoLoader.PackageDefinition;
  gatewayService: grpc.ServiceDefinition;
  statusReaderService: grpc.ServiceDefinition;
  GatewayClient: grpc.ServiceClientConstructor;
  StatusReaderClient: grpc.ServiceClientConstructor;
}

let loaded: PresenceProto | undefined;

export function presenceProto(): PresenceProto {
  if (loaded) return loaded;
  const packageDefinition = protoLoader.loadSync(protoPath('tenten', 'service.proto'), {
    keepCase: true,
    longs: Number,
    defaults: true,
  });
  const grpcObject = grpc.loadPackageDefinition(packageDefinition) as unknown as {
    tenten: { interview: { Gateway: grpc.ServiceClientConstructor; StatusReader: grpc.ServiceClientConstructor } };
  };
  const { Gateway, StatusReader } = grpcObject.tenten.interview;
  loaded = {
    packageDefinition,
    gatewayService: Gateway.service,
    statusReaderService: StatusReader.service,
    GatewayClient: Gateway,
    StatusReaderClient: StatusReader,
  };
  return loaded;
}
