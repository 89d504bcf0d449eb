import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
/**
 * Shared messages of the Sluice protocol, version 1.
 *
 * Compatibility rules for this package: fields are only ever added, never renumbered or
 * re-typed; a change in meaning gets a new field. PROTOCOL_VERSION (common/src/protocol.ts)
 * is bumped when a client must know about a change; brokers accept every version from
 * MIN_PROTOCOL_VERSION up to their own.
 */
/**
 * Sent on every request so a server can log, meter and (later) authorise by client, and
 * refuse a protocol version it does not speak.
 */
export interface RequestHeader {
    clientId: string;
    protocolVersion: number;
}
/**
 * A typed error inside a streamed response (unary calls use the gRPC status instead, with
 * the same code in the `sluice-error-code` trailer). `code` is stable: clients switch on it.
 */
export interface Error {
    code: string;
    message: string;
    retriable: boolean;
    /** When the server wants the client to come back later (throttling, leadership moving). */
    retryAfterMs: number;
}
/** Where a broker can be reached. */
export interface BrokerAddress {
    /** broker group (a master and its slaves), e.g. "b1" */
    group: string;
    /** identity inside the group */
    brokerId: number;
    /** gRPC host:port */
    address: string;
    httpAddress: string;
}
export interface TopicConfig {
    /** 0 = keep for ever */
    retentionMs: number;
    /** per partition; 0 = no size limit */
    retentionBytes: number;
    /** 0 = broker default */
    segmentBytes: number;
    /** largest batch accepted; 0 = broker default */
    maxMessageBytes: number;
}
export declare const RequestHeader: MessageFns<RequestHeader>;
export declare const Error: MessageFns<Error>;
export declare const BrokerAddress: MessageFns<BrokerAddress>;
export declare const TopicConfig: MessageFns<TopicConfig>;
type Builtin = Date | Function | Uint8Array | string | number | boolean | undefined;
type DeepPartial<T> = T extends Builtin ? T : T extends globalThis.Array<infer U> ? globalThis.Array<DeepPartial<U>> : T extends ReadonlyArray<infer U> ? ReadonlyArray<DeepPartial<U>> : T extends {} ? {
    [K in keyof T]?: DeepPartial<T[K]>;
} : Partial<T>;
type KeysOfUnion<T> = T extends T ? keyof T : never;
type Exact<P, I extends P> = P extends Builtin ? P : P & {
    [K in keyof P]: Exact<P[K], I[K]>;
} & {
    [K in Exclude<keyof I, KeysOfUnion<P>>]: never;
};
interface MessageFns<T> {
    encode(message: T, writer?: BinaryWriter): BinaryWriter;
    decode(input: BinaryReader | Uint8Array, length?: number): T;
    create<I extends Exact<DeepPartial<T>, I>>(base?: I): T;
    fromPartial<I extends Exact<DeepPartial<T>, I>>(object: I): T;
}
export {};
//# sourceMappingURL=common.d.ts.map