/**
 * Topics through the admin API:
 *
 *   GET    /api/v1/topics                        every topic: partitions, offsets, sizes
 *   GET    /api/v1/topics/:topic                 one topic, as `sluice topic describe --json`
 *   POST   /api/v1/topics                        create: { name, partitions?, retentionMs?, retentionBytes?, brokers? } → 201
 *   PATCH  /api/v1/topics/:topic                 add partitions: { partitions } (the new total) → the topic
 *   DELETE /api/v1/topics/:topic                 → { deleted }
 *   GET    /api/v1/topics/:topic/messages?partition=P&offset=O | &timestamp=T
 *                                                one message; 404 when there is none (yet)
 *
 * Internal topics (%groups, %DLQ%<group>) can be read here but never created, altered or
 * deleted: deleting %groups would drop every group's offsets and leave the coordinator on
 * closed logs. Those requests get 400 naming the topic as internal, and change nothing.
 *
 * Permissions (checked before anything is read or changed; 403 NOT_AUTHORIZED otherwise): the
 * list shows the topics the caller may describe; describe needs describe on the topic, create
 * create, PATCH alter, DELETE delete, and reading a message consume on the topic.
 */
import type { FastifyInstance } from "fastify";
import { RequestValidationError } from "../../../common/src/http/error-replies.js";
import { permits, requirePermission } from "../../../common/src/http/permissions.js";
import { isInternalTopic } from "../../../common/src/protocol.js";
import type { Admin, CreateTopicOptions } from "../../../clients/src/index.js";
import { describeAllTopics, withInternalFlag } from "./cluster-reads.js";
import { parseTimestamp, toMessageView } from "./message-view.js";
import { alterTopicBody, createTopicBody, createdTopic, deletedTopic, messageQuery, messageResponse, topicDescription, topicParams, topicsResponse } from "./schemas.js";

export interface TopicRoutesOptions {
  readonly admin: () => Admin;
}

interface CreateTopicBody extends CreateTopicOptions {
  name: string;
}

interface MessageQuery {
  partition: number;
  offset?: number;
  timestamp?: string;
}

const TAGS = ["topics"];

/** Longest topic name a refusal repeats (a body's name may be any length before validation). */
const MAX_ECHOED_NAME_CHARS = 249;

/** 400 for a mutating request on an internal topic; `field` is where the name came from. */
function refuseInternalTopic(topic: unknown, field: string, action: "create" | "alter" | "delete"): void {
  if (typeof topic !== "string" || !isInternalTopic(topic)) return;
  const shown = topic.length > MAX_ECHOED_NAME_CHARS ? `${topic.slice(0, MAX_ECHOED_NAME_CHARS)}…` : topic;
  throw new RequestValidationError(
    `${JSON.stringify(shown)} is an internal topic (its name starts with "%"): the admin API does not ${action} internal topics`,
    field,
  );
}

export function registerTopicRoutes(app: FastifyInstance, options: TopicRoutesOptions): void {
  const { admin } = options;

  app.get(
    "/api/v1/topics",
    { schema: { summary: "Every topic with its partitions, start/end offsets and sizes", tags: TAGS, response: { 200: topicsResponse } } },
    async (request) => ({ topics: await describeAllTopics(admin(), (topic) => permits(request, "describe", "topic", topic)) }),
  );

  app.get<{ Params: { topic: string } }>(
    "/api/v1/topics/:topic",
    { schema: { summary: "One topic: partitions, masters, offsets, sizes", tags: TAGS, params: topicParams, response: { 200: topicDescription } } },
    async (request) => {
      requirePermission(request, "describe", "topic", request.params.topic);
      return withInternalFlag(await admin().describeTopic(request.params.topic));
    },
  );

  app.post<{ Body: CreateTopicBody }>(
    "/api/v1/topics",
    {
      schema: {
        summary: "Create a topic",
        description: "400 INVALID_ARGUMENT naming the field for a bad body (bodies are not type-coerced: \"3\" is not a partition count) or an internal topic name.",
        tags: TAGS,
        body: createTopicBody,
        response: { 201: createdTopic },
      },
      // Before validation, whose name pattern would refuse "%groups" without saying why.
      preValidation: async (request) => refuseInternalTopic((request.body as { name?: unknown } | null)?.name, "name", "create"),
    },
    async (request, reply) => {
      const { name, ...settings } = request.body;
      requirePermission(request, "create", "topic", name);
      const created = await admin().createTopic(name, settings);
      return reply.code(201).send(created);
    },
  );

  app.patch<{ Params: { topic: string }; Body: { partitions: number } }>(
    "/api/v1/topics/:topic",
    {
      schema: {
        summary: "Add partitions to a topic",
        description:
          "409 INVALID_PARTITIONS when the count is not more than the topic has; 400 INVALID_ARGUMENT for an internal topic. Keyed messages may map to other partitions afterwards.",
        tags: TAGS,
        params: topicParams,
        body: alterTopicBody,
        response: { 200: createdTopic },
      },
    },
    async (request) => {
      requirePermission(request, "alter", "topic", request.params.topic);
      refuseInternalTopic(request.params.topic, "topic", "alter");
      return admin().createPartitions(request.params.topic, request.body.partitions);
    },
  );

  app.delete<{ Params: { topic: string } }>(
    "/api/v1/topics/:topic",
    {
      schema: {
        summary: "Delete a topic and its data",
        description: "400 INVALID_ARGUMENT for an internal topic (%groups, %DLQ%<group>): those are never deleted.",
        tags: TAGS,
        params: topicParams,
        response: { 200: deletedTopic },
      },
    },
    async (request) => {
      requirePermission(request, "delete", "topic", request.params.topic);
      refuseInternalTopic(request.params.topic, "topic", "delete");
      await admin().deleteTopic(request.params.topic);
      return { deleted: request.params.topic };
    },
  );

  app.get<{ Params: { topic: string }; Querystring: MessageQuery }>(
    "/api/v1/topics/:topic/messages",
    {
      schema: {
        summary: "One message, by offset or as the first at or after a time",
        description:
          "Key, value and header values are UTF-8 text when the bytes are valid UTF-8, base64 otherwise (the *Encoding fields say which). " +
          "404 NOT_FOUND when there is no such message yet (the offset is the log end, or nothing is that recent); 416 OFFSET_OUT_OF_RANGE for an offset outside the log.",
        tags: TAGS,
        params: topicParams,
        querystring: messageQuery,
        response: { 200: messageResponse },
      },
    },
    async (request, reply) => {
      const { topic } = request.params;
      requirePermission(request, "consume", "topic", topic);
      const { partition, offset, timestamp } = request.query;
      if ((offset === undefined) === (timestamp === undefined)) {
        throw new RequestValidationError(`query string needs exactly one of the fields "offset" and "timestamp"`, offset === undefined ? "offset" : "timestamp");
      }
      const timestampMs = timestamp === undefined ? undefined : parseTimestamp(timestamp);
      const found = await admin().getMessage(topic, partition, timestampMs === undefined ? { offset: offset as number } : { timestamp: timestampMs });
      if (found === null) {
        const at = timestampMs === undefined ? `at offset ${offset}` : `at or after ${new Date(timestampMs).toISOString()}`;
        return reply.code(404).send({ code: "NOT_FOUND", message: `no message in ${topic}/${partition} ${at} yet`, retriable: false });
      }
      return toMessageView(found);
    },
  );
}
