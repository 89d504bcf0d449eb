/**
 * Fuzzing the generated protobuf decoders (ts-proto `X.decode`) of every request the Broker
 * service receives: Handshake, Produce, Fetch, Subscribe, ListOffsets and the topic admin RPCs.
 * The other services have one file each (fuzz-proto-<service>.test.ts), for time.
 * What is checked: test/fuzz/proto-checks.ts.
 */
import { describeServiceDecoders } from "../fuzz/proto-checks.js";

describeServiceDecoders("Broker", ["Broker.handshake", "Broker.produce", "Broker.fetch", "Broker.subscribe", "Broker.listOffsets"]);
