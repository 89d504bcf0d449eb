/** The checks a topic must pass before any broker is asked to create it. */
import { InvalidArgumentError, InvalidTopicNameError } from "../../common/src/errors.js";
import { isInternalTopic, isValidTopicName as isValidName } from "../../common/src/protocol.js";

/** More partitions than this is a typo or a misunderstanding, not a design. */
export const MAX_PARTITIONS_PER_TOPIC = 10_000;

/** Any name a topic may have, internal `%` names included (brokers report those too). */
export function isValidTopicName(topic: string): boolean {
  return isValidName(topic, true);
}

/** A name users may create: internal names are made by Sluice itself (see `internal`). */
export function validateTopicName(topic: string, internal = false): void {
  if (isValidName(topic, internal)) return;
  if (isInternalTopic(topic)) {
    throw new InvalidTopicNameError(`"${topic}" is reserved: names starting with "%" belong to Sluice's internal topics`);
  }
  const shown = topic === "" ? "an empty name" : `"${topic}"`;
  throw new InvalidTopicNameError(
    `${shown} is not a valid topic name: use 1 to 249 characters from a-z, A-Z, 0-9, ".", "_" and "-" ` +
      `(and not "." or ".."), e.g. "orders" or "orders.v2"`,
  );
}

export function validatePartitionCount(topic: string, partitions: number): void {
  if (Number.isInteger(partitions) && partitions >= 1 && partitions <= MAX_PARTITIONS_PER_TOPIC) return;
  throw new InvalidArgumentError(
    `topic "${topic}" cannot have ${partitions} partitions: choose between 1 and ${MAX_PARTITIONS_PER_TOPIC}`,
  );
}
