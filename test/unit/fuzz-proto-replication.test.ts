/**
 * Fuzzing the generated protobuf decoders of the Replication service: every request a master
 * receives, and the Replicate stream's answers, which a slave decodes.
 * What is checked: test/fuzz/proto-checks.ts.
 */
import { describeServiceDecoders } from "../fuzz/proto-checks.js";

describeServiceDecoders("Replication", ["Replication.replicate", "Replication.replicate-response", "Replication.readTail"]);
