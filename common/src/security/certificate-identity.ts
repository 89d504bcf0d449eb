/**
 * The identity a verified client certificate proves: `User:<CN of the subject>`, as Kafka's
 * default SSL principal mapping does with the whole DN made short. The TLS layer has already
 * checked the chain against `--tls-ca`; this only names the holder.
 */
import type { PeerCertificate } from "node:tls";
import { AuthenticationFailedError } from "../errors.js";
import { USER_NAME_PATTERN } from "./acl.js";
import { PRINCIPAL_PREFIX } from "./types.js";

export function principalFromCertificate(cert: PeerCertificate): string {
  // getPeerCertificate() gives {} when the client sent none.
  const subject = cert?.subject as PeerCertificate["subject"] | undefined;
  if (subject === undefined || subject === null) {
    throw new AuthenticationFailedError("the client certificate has no subject; issue one whose subject CN is the user name");
  }
  // A subject with several CN attributes comes as an array: refuse rather than pick one.
  const commonName: unknown = subject.CN;
  if (Array.isArray(commonName)) {
    throw new AuthenticationFailedError(`the client certificate's subject has ${commonName.length} common names (CN); issue one with exactly one, the user name`);
  }
  if (typeof commonName !== "string" || commonName.length === 0) {
    throw new AuthenticationFailedError("the client certificate's subject has no common name (CN); issue one whose CN is the user name");
  }
  if (commonName === "*" || !USER_NAME_PATTERN.test(commonName)) {
    throw new AuthenticationFailedError(
      `the client certificate's common name ${JSON.stringify(commonName.slice(0, 128))} is not a valid user name: use 1 to 128 characters from A-Z, a-z, 0-9, ".", "_", "@" and "-"`,
    );
  }
  return PRINCIPAL_PREFIX + commonName;
}
