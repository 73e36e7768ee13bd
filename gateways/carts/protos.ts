// Loads the Sedeo contract (cart, item, type) once: the definition serves both the server and reflection.

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath } from '../../runtime/index.js';

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true, // the contract mixes user_uuid, zipCode and UUID: keep them as written
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [protoPath()],
};

let loaded: { definition: protoLoader.PackageDefinition; grpcObject: grpc.GrpcObject } | undefined;

export function sedeoProtos(): { definition: protoLoader.PackageDefinition; grpcObject: grpc.GrpcObject } {
  if (!loaded) {
    const definition = protoLoader.loadSync([protoPath('sedeo', 'cart', 'cart.proto'), protoPath('sedeo', 'item', 'item.proto')], LOADER_OPTIONS);
    loaded = { definition, grpcObject: grpc.loadPackageDefinition(definition) };
  }
  return loaded;
}

export function serviceOf(pkg: 'cart' | 'item', name: 'Cart' | 'Item'): grpc.ServiceClientConstructor {
  const ns = sedeoProtos().grpcObject[pkg] as grpc.GrpcObject;
  return ns[name] as grpc.ServiceClientConstructor;
}
