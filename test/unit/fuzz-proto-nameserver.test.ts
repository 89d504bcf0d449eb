/**
 * Fuzzing the generated protobuf decoders of every request the NameServer service receives:
 * broker registration and heartbeats, routes, topic admin, coordinators, promotion.
 * What is checked: test/fuzz/proto-checks.ts.
 */
import { describeServiceDecoders } from "../fuzz/proto-checks.js";

describeServiceDecoders("NameServer", ["NameServer.registerBroker", "NameServer.heartbeat", "NameServer.createTopic", "NameServer.watchRoutes"]);
