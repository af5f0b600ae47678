// Secrets a URL can carry, masked wherever one is logged or printed: the password of its user
// info (a DATABASE_URL's postgres://user:secret@host/db) and credentials in its query string
// (a request's ?api_key=, libpq's ?password=). Works on whole URLs and on request paths alike,
// and on text that does not parse as a URL.

const REDACTED = '[redacted]';
// Greedy up to the last "@" of the authority: a password may hold an "@" its writer did not escape.
const USERINFO_PASSWORD = /^([a-z][a-z\d+.-]*:\/\/[^/?#:@]*:)[^/?#]*@/i;
const SECRET_PARAMETER = /([?&](?:api_key|password)=)[^&#]*/gi;

export function redactUrl(url: string): string {
  return url.replace(USERINFO_PASSWORD, `$1${REDACTED}@`).replace(SECRET_PARAMETER, `$1${REDACTED}`);
}
