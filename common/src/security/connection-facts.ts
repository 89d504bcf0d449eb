/**
 * What authentication needs to know about the connection a request came in on, read the same
 * way for a gRPC connection (the listener records it per peer) and an HTTPS request (read from
 * its socket): whether a client certificate was presented, whether it verified against
 * `--tls-ca`, and why not.
 */
import { TLSSocket, type PeerCertificate } from "node:tls";

export interface ConnectionFacts {
  /** TLS only: a client certificate was presented. */
  readonly certificatePresented: boolean;
  /** Why a presented certificate did not verify (OpenSSL code, e.g. CERT_HAS_EXPIRED). */
  readonly certificateError: string | undefined;
  /** A presented certificate that chains to the configured CA and is within its validity. */
  readonly verifiedCertificate: PeerCertificate | undefined;
  /** Set when the connection is over a limit: every call on it is refused with this. */
  readonly refusedBecause: string | undefined;
}

/** A plain-text connection, or TLS without a client certificate. */
export const PLAIN_CONNECTION: ConnectionFacts = Object.freeze({
  certificatePresented: false,
  certificateError: undefined,
  verifiedCertificate: undefined,
  refusedBecause: undefined,
});

/** The facts of a TLS socket whose handshake is done; PLAIN_CONNECTION for anything else. */
export function connectionFactsOf(socket: unknown): ConnectionFacts {
  if (!(socket instanceof TLSSocket)) return PLAIN_CONNECTION;
  const cert = socket.getPeerCertificate();
  // getPeerCertificate() gives {} when the client sent none.
  const presented = cert !== null && typeof cert === "object" && Object.keys(cert).length > 0;
  if (!presented) return PLAIN_CONNECTION;
  const verified = socket.authorized;
  return {
    certificatePresented: true,
    // Node sets authorizationError to OpenSSL's code string (e.g. "CERT_HAS_EXPIRED").
    certificateError: verified ? undefined : String(socket.authorizationError ?? "not verified"),
    verifiedCertificate: verified ? cert : undefined,
    refusedBecause: undefined,
  };
}
