/** The broker's commit log: what the rest of the broker imports from storage. */
export {
  DEFAULT_PARTITION_CONFIG,
  validatePartitionConfig,
  type FlushPolicy,
  type PartitionConfig,
} from "./config.js";
export {
  NO_LEADER_EPOCH,
  PartitionLog,
  type AppendResult,
  type PartitionLogOptions,
  type ReadLimit,
  type ReadResult,
} from "./partition-log.js";
export { LeaderEpochCache, LEADER_EPOCHS_FILE, type EpochEntry } from "./leader-epochs.js";
export { divergencePoint, type EpochHistory } from "./divergence.js";
export { ProducerStateTable, PRODUCER_BATCHES_REMEMBERED, type ProducerBatch, type ProducerEntry } from "./producer-state.js";
export {
  DEFAULT_FLUSH_INTERVAL_MS,
  DEFAULT_RETENTION_CHECK_INTERVAL_MS,
  LogManager,
  type LogManagerOptions,
} from "./log-manager.js";
export { nodeStorageIo, type StorageIo } from "./storage-io.js";
