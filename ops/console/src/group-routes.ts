/**
 * Consumer and queue groups through the admin API:
 *
 *   GET /api/v1/groups                              every group: kind, state, member count
 *   GET /api/v1/groups/:group                       members, assignments, lag per partition, queue windows
 *   GET /api/v1/groups/:group/dead-letters?max=N    a queue group's dead letters, oldest first
 *
 * Permissions: the list shows the groups the caller may describe; a group's description needs
 * describe on it; its dead letters need consume on it, because they are message contents (the
 * broker checks `%DLQ%G` as group G, and reading it is consuming, as `sluice dlq list` is).
 * A refusal is 403 NOT_AUTHORIZED before anything is read.
 */
import type { FastifyInstance } from "fastify";
import { permits, requirePermission } from "../../../common/src/http/permissions.js";
import type { Admin } from "../../../clients/src/index.js";
import { toDeadLetterView } from "./message-view.js";
import { deadLettersQuery, deadLettersResponse, groupDescription, groupParams, groupsResponse } from "./schemas.js";

export interface GroupRoutesOptions {
  readonly admin: () => Admin;
}

const TAGS = ["groups"];

export function registerGroupRoutes(app: FastifyInstance, options: GroupRoutesOptions): void {
  const { admin } = options;

  app.get(
    "/api/v1/groups",
    { schema: { summary: "Every consumer and queue group", tags: TAGS, response: { 200: groupsResponse } } },
    async (request) => ({ groups: (await admin().listGroups()).filter(({ group }) => permits(request, "describe", "group", group)) }),
  );

  app.get<{ Params: { group: string } }>(
    "/api/v1/groups/:group",
    {
      schema: {
        summary: "Members, assignments, committed offsets and lag per partition; a queue group's in-flight windows",
        description: "The same document as `sluice group describe --json`. Unknown group: 404 UNKNOWN_GROUP.",
        tags: TAGS,
        params: groupParams,
        response: { 200: groupDescription },
      },
    },
    async (request) => {
      requirePermission(request, "describe", "group", request.params.group);
      return admin().describeGroup(request.params.group);
    },
  );

  app.get<{ Params: { group: string }; Querystring: { max: number } }>(
    "/api/v1/groups/:group/dead-letters",
    {
      schema: {
        summary: "A queue group's dead letters not redriven yet, oldest first",
        description:
          "`truncated` is true when more than `max` wait. A group without a dead-letter topic: 404 UNKNOWN_GROUP. " +
          "Needs consume on the group: dead letters are message contents.",
        tags: TAGS,
        params: groupParams,
        querystring: deadLettersQuery,
        response: { 200: deadLettersResponse },
      },
    },
    async (request) => {
      const { group } = request.params;
      // Payloads, read here with the console's own client: the caller's right to read them is checked first.
      requirePermission(request, "consume", "group", group);
      const { max } = request.query;
      // One more than asked tells whether the list stops at `max` or goes on.
      const letters = await admin().deadLetters(group, { max: max + 1 });
      return { group, deadLetters: letters.slice(0, max).map(toDeadLetterView), truncated: letters.length > max };
    },
  );
}
