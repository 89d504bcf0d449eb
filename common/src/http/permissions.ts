/**
 * Permission checks for HTTP routes (admin REST API, console, flow admin), the same ACLs the
 * gRPC handlers check. The server has already authenticated the request before routing
 * (server.ts sets `request.principal`); a route calls `requirePermission` first thing, before
 * it reads or changes anything:
 *
 *   requirePermission(request, "delete", "topic", request.params.topic);
 *
 * A refusal throws NotAuthorizedError, which every error handler answers as
 *   403 {"code":"NOT_AUTHORIZED","message":"User:alice may not delete topic orders; ask an admin: …","retriable":false}
 * and the guard counts it (sluice_authorization_denied_total). List routes filter with
 * `permits` instead, so a caller sees only what it may describe, as ListTopics does over gRPC.
 * Without --auth the guard is the open one: each check is one boolean.
 */
import type { FastifyRequest } from "fastify";
import { CLUSTER_RESOURCE_NAME, type Operation, type ResourceType } from "../security/types.js";
import type {} from "./server.js";

/** The one name of the cluster resource, for `requirePermission(request, "describe", "cluster", CLUSTER)`. */
export const CLUSTER = CLUSTER_RESOURCE_NAME;

/**
 * The `WWW-Authenticate` value of a 401: browsers answer it with their Basic login prompt
 * (the console relies on it), and scripts learn which scheme to send.
 */
export const BASIC_CHALLENGE = 'Basic realm="sluice", charset="UTF-8"';

/** Throws NotAuthorizedError (403) unless the request's principal may do `operation` on the resource. */
export function requirePermission(request: FastifyRequest, operation: Operation, resourceType: ResourceType, resourceName: string): void {
  request.server.securityGuard.require(request.principal, operation, resourceType, resourceName);
}

/** Whether the request's principal may do `operation` on the resource (for filtering lists; counts nothing). */
export function permits(request: FastifyRequest, operation: Operation, resourceType: ResourceType, resourceName: string): boolean {
  return request.server.securityGuard.allows(request.principal, operation, resourceType, resourceName);
}
