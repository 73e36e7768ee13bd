// Connection URLs made safe to print in messages and logs: the password, if any, hidden.

/**
 * The URL with its password replaced by `***`. A string that is not a URL is not printed at all,
 * since where a password would be in it cannot be told.
 */
export function redactedUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(a URL that does not parse)';
  }
}
