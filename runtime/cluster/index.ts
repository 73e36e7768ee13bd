// The cluster's building blocks in one import, for startNode and the tools (troupe inspect).

export { clusterKeys, type ClusterKeys } from './keys.js';
export { RedisMembership, type MemberInfo, type RedisMembershipOptions } from './redis-membership.js';
export { DEFAULT_VNODES, movedPartitions, Ring, ringPoint, type PartitionMove } from './ring.js';
export { RedisRing, type RedisRingOptions, type RingView } from './redis-ring.js';
export { PartitionLeases, StaleEpoch, type GrabResult, type LeaseHolder, type PartitionLeasesOptions, type RenewResult } from './leases.js';
export { PartitionOwnership, type PartitionOwnershipOptions, type PartitionState } from './partition-ownership.js';
export * from './frame-codec.js';
export { ClusterTransport, type ClusterTransportOptions, type PeerLinkStats } from './transport.js';
