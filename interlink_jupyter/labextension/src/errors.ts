/** Errors shown to the user (kept free of imports so components stay light). */

/** A failed REST call: `message` is what to show, `field` the input at fault. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly field: string | null = null
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** A readable text for anything thrown. */
export function errorText(error: unknown): string {
  if (error instanceof Error) {
    return error.message;
  }
  return String(error);
}
