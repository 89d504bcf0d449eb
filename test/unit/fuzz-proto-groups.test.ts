/**
 * Fuzzing the generated protobuf decoders of every request the Groups service receives:
 * group heartbeats, offset commits and fetches, the Queue stream.
 * What is checked: test/fuzz/proto-checks.ts.
 */
import { describeServiceDecoders } from "../fuzz/proto-checks.js";

describeServiceDecoders("Groups", ["Groups.heartbeat", "Groups.commitOffsets", "Groups.queue"]);
