/**
 * The record batch codec: Kafka RecordBatch v2 layout and checks (layout.ts), the
 * client-side encoder (builder.ts), decoder (reader.ts), compression and varints.
 */
export * from "./layout.js";
export * from "./varint.js";
export * from "./compression.js";
export * from "./builder.js";
export * from "./reader.js";
