"""A page's basic accessibility, checked in the browser the tests already drive: what a
screen-reader or keyboard user needs first (WCAG 2.1 A: 1.1.1, 1.3.1, 2.4.2, 2.4.4, 3.1.1,
4.1.2). Not a full audit; the rules every console and GHL page must keep."""

from __future__ import annotations

from playwright.async_api import Frame, Page

# Run in the page: each rule broken, with the element that breaks it.
_CHECK = """() => {
  const problems = [];
  const named = (el) => (el.labels && el.labels.length && el.labels[0].textContent.trim())
      || (el.getAttribute('aria-label') || '').trim()
      || (el.tagName === 'BUTTON' && el.textContent.trim())
      || (el.type === 'hidden');
  if (!document.documentElement.lang) problems.push('html has no lang');
  if (!document.title.trim()) problems.push('the page has no title');
  if (document.querySelectorAll('h1').length !== 1) problems.push('not exactly one h1');
  for (const el of document.querySelectorAll('input, select, textarea, button')) {
    if (!named(el)) problems.push('unnamed control: ' + el.outerHTML.slice(0, 80));
  }
  for (const a of document.querySelectorAll('a')) {
    if (!a.textContent.trim() && !a.getAttribute('aria-label'))
      problems.push('link without text: ' + a.outerHTML.slice(0, 80));
  }
  for (const table of document.querySelectorAll('table')) {
    if (!table.querySelector('caption')) problems.push('table without caption');
    for (const th of table.querySelectorAll('th'))
      if (!th.getAttribute('scope')) problems.push('th without scope: ' + th.textContent);
  }
  for (const img of document.querySelectorAll('img'))
    if (!img.hasAttribute('alt')) problems.push('img without alt');
  const ids = [...document.querySelectorAll('[id]')].map((el) => el.id);
  for (const id of new Set(ids.filter((id, i) => ids.indexOf(id) !== i)))
    problems.push('duplicate id: ' + id);
  return problems;
}"""


async def assert_accessible(page: Page | Frame) -> None:
    problems = await page.evaluate(_CHECK)
    assert problems == [], f"{page.url}: {problems}"
