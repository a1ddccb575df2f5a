/** GitHub's heading anchor: lower case, punctuation other than - and _ dropped, spaces → -. */
export function githubSlug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** Every `#…` heading's anchor in a Markdown document, as links like `file.md#anchor` use them. */
export function headingAnchors(markdown: string): Set<string> {
  return new Set([...markdown.matchAll(/^#{1,6} (.+)$/gm)].map((m) => githubSlug(m[1] ?? '')));
}
