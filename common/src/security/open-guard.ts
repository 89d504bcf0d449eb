/**
 * The guard of a server running without `--auth`: every caller is ANONYMOUS (a superuser) and
 * may do everything, so the checks in the handlers cost one call that returns at once. It is
 * the default wherever a server is started without a real guard (tests, `sluice dev`).
 */
import { ANONYMOUS, type Principal, type SecurityGuard } from "./types.js";

export const openGuard: SecurityGuard = Object.freeze({
  enabled: false,
  principalOf: (): Principal => ANONYMOUS,
  require: (): void => undefined,
  allows: (): boolean => true,
});
