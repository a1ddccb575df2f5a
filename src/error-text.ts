/** The message of whatever was thrown, for a log field or a sentence that says what to do next. */
export function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
