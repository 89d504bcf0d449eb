/** The name server's public entry point, for the CLI and `sluice dev`. */
export { NameServer } from "./server.js";
export {
  DEFAULT_EXPIRY_HEARTBEATS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_NAMESERVER_GRPC_PORT,
  DEFAULT_NAMESERVER_HOST,
  DEFAULT_NAMESERVER_HTTP_PORT,
  parseNameServerOptions,
  type NameServerOptions,
} from "./options.js";
export type { RegistryStore, BrokerRecord, TopicRecord } from "./registry/store.js";
export { MemoryRegistryStore } from "./registry/memory-store.js";
export type { BrokerState } from "./liveness/detector.js";
