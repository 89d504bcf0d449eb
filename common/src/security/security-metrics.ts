/**
 * What security refuses, for Prometheus: failed authentications by reason, denied operations,
 * failed TLS handshakes and connections over a limit. A name server and a broker in one process
 * (`sluice dev`) share a registry, so each metric is registered once and reused.
 */
import { Counter, Gauge, type Registry } from "prom-client";

function counter<T extends string>(registry: Registry, name: string, help: string, labelNames: readonly T[]): Counter<T> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter<T>;
  return new Counter({ name, help, labelNames, registers: [registry] });
}

/** Why an authentication failed: a low-cardinality label. */
export type AuthFailureReason =
  | "missing_credentials"
  | "bad_credentials"
  | "malformed_credentials"
  | "certificate_expired"
  | "certificate_untrusted"
  | "certificate_invalid";

export class SecurityMetrics {
  private readonly authFailures: Counter<"reason" | "transport">;
  private readonly denied: Counter<"operation" | "resource_type">;
  private readonly handshakeFailures: Counter<"reason">;
  private readonly refusedConnections: Counter<"limit">;

  constructor(registry: Registry) {
    this.authFailures = counter(registry, "sluice_authentication_failures_total", "Requests refused because the caller could not be authenticated, by reason and transport (grpc, http)", ["reason", "transport"]);
    this.denied = counter(registry, "sluice_authorization_denied_total", "Requests an ACL refused, by operation and resource type", ["operation", "resource_type"]);
    this.handshakeFailures = counter(registry, "sluice_tls_handshake_failures_total", "TLS handshakes that failed (not_tls: a plain-text client on a TLS port)", ["reason"]);
    this.refusedConnections = counter(registry, "sluice_connections_refused_total", "Connections over --max-connections (total) or --max-connections-per-client (per_client)", ["limit"]);
    if (!registry.getSingleMetric("sluice_security_enabled")) {
      new Gauge({ name: "sluice_security_enabled", help: "1 when --auth is on", registers: [registry] });
    }
    this.enabledGauge = registry.getSingleMetric("sluice_security_enabled") as Gauge;
  }

  private readonly enabledGauge: Gauge;

  setEnabled(enabled: boolean): void {
    this.enabledGauge.set(enabled ? 1 : 0);
  }

  authenticationFailed(reason: AuthFailureReason, transport: "grpc" | "http"): void {
    this.authFailures.inc({ reason, transport });
  }

  authorizationDenied(operation: string, resourceType: string): void {
    this.denied.inc({ operation, resource_type: resourceType });
  }

  handshakeFailed(reason: string): void {
    this.handshakeFailures.inc({ reason });
  }

  connectionRefused(limit: "per_client" | "total"): void {
    this.refusedConnections.inc({ limit });
  }
}
