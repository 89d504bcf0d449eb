/**
 * Fuzzing the generated protobuf decoders of every request the Security service receives:
 * users, ACLs and the security watch.
 * What is checked: test/fuzz/proto-checks.ts.
 */
import { describeServiceDecoders } from "../fuzz/proto-checks.js";

describeServiceDecoders("Security", ["Security.createUser", "Security.createAcl", "Security.watchSecurity"]);
