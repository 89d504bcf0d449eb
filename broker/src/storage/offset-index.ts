/**
 * Sparse offset index of one segment (`<baseOffset>.index`): where in the `.log` file a batch
 * starts, for one batch every `indexIntervalBytes` of log.
 *
 *   entry (8 bytes, big-endian), entries in increasing offset and position order:
 *     0  4  relativeOffset  int32  batch base offset minus the segment's base offset
 *     4  4  position        int32  byte position of that batch in the .log file
 *
 * No entry is needed for position 0: a lookup below the first entry starts at the segment's
 * start. A read looks up the floor entry and then walks batch headers from there, so at most
 * about `indexIntervalBytes` of headers are walked.
 */
import { IndexFile } from "./index-file.js";

export const OFFSET_INDEX_ENTRY_BYTES = 8;
const RELATIVE_OFFSET_AT = 0;
const POSITION_AT = 4;

export class OffsetIndex extends IndexFile {
  private constructor(path: string, fd: number, content: Buffer) {
    super(path, fd, OFFSET_INDEX_ENTRY_BYTES, content);
  }

  /** Opens the index; `problem` is set when its content is structurally unusable. */
  static open(path: string): { index: OffsetIndex; existed: boolean; problem: string | null } {
    const { fd, content, existed, problem } = IndexFile.openFile(path, OFFSET_INDEX_ENTRY_BYTES);
    const index = new OffsetIndex(path, fd, content);
    return { index, existed, problem: problem ?? index.orderProblem() };
  }

  /** relativeOffsetAt as a value, made once: the read path searches with it on every lookup. */
  private readonly relativeOffsetKey = (i: number): number => this.relativeOffsetAt(i);

  relativeOffsetAt(i: number): number {
    return this.view.readInt32BE(this.entryAt(i) + RELATIVE_OFFSET_AT);
  }

  positionAt(i: number): number {
    return this.view.readInt32BE(this.entryAt(i) + POSITION_AT);
  }

  push(relativeOffset: number, position: number): void {
    const at = this.pushSlot();
    this.view.writeInt32BE(relativeOffset, at + RELATIVE_OFFSET_AT);
    this.view.writeInt32BE(position, at + POSITION_AT);
  }

  /**
   * The entry with the largest relative offset ≤ `relativeOffset`, or the segment start
   * when there is none: the place from which to walk batch headers.
   */
  floor(relativeOffset: number): { relativeOffset: number; position: number } {
    const found = this.lastAtOrBelow(this.relativeOffsetKey, relativeOffset);
    return found < 0 ? { relativeOffset: 0, position: 0 } : { relativeOffset: this.relativeOffsetAt(found), position: this.positionAt(found) };
  }

  /** Why the entries are not strictly increasing, or null. */
  private orderProblem(): string | null {
    let previousOffset = -1;
    let previousPosition = -1;
    for (let i = 0; i < this.count; i++) {
      const offset = this.relativeOffsetAt(i);
      const position = this.positionAt(i);
      if (offset <= previousOffset || position <= previousPosition) {
        return `entry ${i} (offset +${offset} at ${position}) does not follow (+${previousOffset} at ${previousPosition})`;
      }
      previousOffset = offset;
      previousPosition = position;
    }
    return null;
  }
}
