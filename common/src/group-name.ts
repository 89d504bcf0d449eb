/** The one check of a consumer/queue group name, shared by name server, broker and SDK. */
import { InvalidArgumentError } from "./errors.js";
import { GROUP_NAME_PATTERN } from "./protocol.js";

/** Group names: `%DLQ%<group>` must be a valid topic name. */
export function checkGroupName(group: unknown): string {
  if (typeof group === "string" && GROUP_NAME_PATTERN.test(group)) return group;
  throw new InvalidArgumentError(
    `${group === "" ? "an empty name" : (JSON.stringify(group) ?? String(group))} is not a valid group name: use 1 to 200 characters from a-z, A-Z, 0-9, ".", "_" and "-"`,
  );
}
