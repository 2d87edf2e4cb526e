"""An accessibility check of every console page, in headless Chromium:
every form control has a label, every image and canvas a text
alternative, headings go down one level at a time from one h1, text
contrast is at least 4.5:1 (3:1 for large text) computed from the
browser's computed styles, and every control is reached with the Tab
key.  The checker is written here (CHECK below), not taken from a
library, so what it checks is what this file says."""
import os
import time
import unittest

from harness import AT, request
from test_console import (COMP_INPUT, CRM, SLA_INPUT, TOKENS, By,
                          ConsoleCase, WebDriverException, WebDriverWait,
                          browser, submit)
from selenium.webdriver.common.keys import Keys  # noqa: E402

# Returns a list of problems, each a string naming the element.
CHECK = r"""
function name(el) {
  var s = el.tagName.toLowerCase();
  if (el.id) s += '#' + el.id;
  var t = (el.textContent || el.value || '').trim().slice(0, 30);
  return t ? s + ' "' + t + '"' : s;
}
function visible(el) {
  var r = el.getBoundingClientRect(), cs = getComputedStyle(el);
  return r.width > 0 && r.height > 0 && cs.visibility !== 'hidden' &&
         cs.display !== 'none';
}
function rgba(s) {
  var m = s.match(/rgba?\(([^)]+)\)/);
  if (!m) return [0, 0, 0, 0];
  var p = m[1].split(',').map(parseFloat);
  return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
}
function background(el) {
  // the first opaque background behind EL, the ones above it blended in
  var layers = [];
  for (var e = el; e; e = e.parentElement) {
    var c = rgba(getComputedStyle(e).backgroundColor);
    if (c[3] > 0) layers.push(c);
    if (c[3] >= 1) break;
  }
  var out = [255, 255, 255];  // the canvas under everything
  for (var i = layers.length - 1; i >= 0; i--) {
    var a = layers[i][3];
    out = [0, 1, 2].map(function (k) {
      return layers[i][k] * a + out[k] * (1 - a);
    });
  }
  return out;
}
function luminance(c) {
  var v = c.slice(0, 3).map(function (x) {
    x /= 255;
    return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4);
  });
  return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
}
var problems = [];
// 1. labels
document.querySelectorAll('input, select, textarea').forEach(function (el) {
  if (el.type === 'hidden' || el.type === 'submit' || el.type === 'button')
    return;
  var ok = (el.labels && el.labels.length &&
            Array.prototype.some.call(el.labels, function (l) {
              return l.textContent.trim();
            })) || el.getAttribute('aria-label') ||
           el.getAttribute('aria-labelledby');
  if (!ok) problems.push('no label: ' + name(el));
});
document.querySelectorAll('button').forEach(function (el) {
  if (!(el.textContent.trim() || el.getAttribute('aria-label')))
    problems.push('button without text: ' + name(el));
});
document.querySelectorAll('a[href]').forEach(function (el) {
  if (!(el.textContent.trim() || el.getAttribute('aria-label')))
    problems.push('link without text: ' + name(el));
});
// 2. text alternatives
document.querySelectorAll('img').forEach(function (el) {
  if (!el.hasAttribute('alt')) problems.push('img without alt: ' + name(el));
});
document.querySelectorAll('canvas, svg').forEach(function (el) {
  var label = el.getAttribute('aria-label');
  var by = el.getAttribute('aria-labelledby');
  if (by) {
    var t = by.split(/\s+/).map(function (id) {
      var e = document.getElementById(id);
      return e ? e.textContent.trim() : '';
    }).join('');
    label = label || t;
  }
  if (el.getAttribute('role') !== 'img' || !label)
    problems.push('no text alternative (role=img and a label): ' + name(el));
});
// 3. headings: one h1, first; then never a level skipped going down
var hs = document.querySelectorAll('h1, h2, h3, h4, h5, h6'), last = 0;
if (!hs.length || hs[0].tagName !== 'H1')
  problems.push('the first heading is not an h1');
hs.forEach(function (h) {
  var level = +h.tagName[1];
  if (level === 1 && last) problems.push('a second h1: ' + name(h));
  if (level > last + 1) problems.push('heading skips a level: ' + name(h));
  last = level;
});
// 4. contrast of every visible text
var walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
var seen = new Set();
while (walker.nextNode()) {
  var el = walker.currentNode.parentElement;
  if (!walker.currentNode.textContent.trim() || seen.has(el) || !visible(el))
    continue;
  seen.add(el);
  var cs = getComputedStyle(el), fg = rgba(cs.color), bg = background(el);
  var fga = [0, 1, 2].map(function (k) {
    return fg[k] * fg[3] + bg[k] * (1 - fg[3]);
  });
  var l1 = luminance(fga), l2 = luminance(bg);
  var ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
  var size = parseFloat(cs.fontSize), bold = +cs.fontWeight >= 700;
  var need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
  if (ratio < need)
    problems.push('contrast ' + ratio.toFixed(2) + ' < ' + need + ': ' +
                  name(el) + ' (' + cs.color + ' on rgb(' +
                  bg.map(Math.round).join(',') + '))');
}
return problems;
"""

# The controls Tab must reach: visible, enabled, not taken out of the order.
CONTROLS = r"""
return Array.prototype.filter.call(document.querySelectorAll(
    'a[href], button, input, select, textarea, [tabindex]'),
  function (el) {
    var r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && !el.disabled &&
           el.type !== 'hidden' && el.tabIndex >= 0;
  });
"""


class PageChecks:
    """The checks, for a test class with a browser (self.b) and a folder
    for screenshots (self.tmp)."""

    def check(self, what, tab=True):
        """Run the checks on the page in the browser now; TAB false for a
        page that reloads itself (the Impact run's progress), where a Tab
        walk would cross a reload: CHECK runs in one script call, and is
        asked again if the page went away under it."""
        self.b.save_screenshot(os.path.join(self.tmp, what + ".png"))
        for attempt in range(10):
            try:
                problems = self.b.execute_script(CHECK)
                break
            except WebDriverException:
                if attempt == 9:
                    raise
                time.sleep(0.1)
        self.assertEqual(problems, [], what)
        if tab:
            self.assertEqual(self.unreached(), [],
                             what + ": not reached with Tab")

    def unreached(self):
        """The controls of the page that Tab does not reach."""
        controls = self.b.execute_script(CONTROLS)
        self.assertGreater(len(controls), 0)
        self.b.execute_script("document.activeElement.blur();"
                              "window.scrollTo(0, 0);")
        body = self.b.find_element(By.TAG_NAME, "body")
        reached = set()
        for _ in range(len(controls) + 5):
            self.b.switch_to.active_element.send_keys(Keys.TAB) \
                if reached else body.send_keys(Keys.TAB)
            el = self.b.switch_to.active_element
            if el.id in reached:
                break
            reached.add(el.id)
        return [self.b.execute_script(
            "var e = arguments[0]; return e.outerHTML.slice(0, 80);", c)
            for c in controls if c.id not in reached]


class Accessibility(PageChecks, ConsoleCase):
    @classmethod
    def setUpClass(cls):
        cls.start_daemon("console-a11y", TOKENS)
        try:
            cls.ids = []
            for i in range(3):
                st, _, body = cls.d.call(
                    "POST", "/v1/decisions",
                    request("compensation", "GD-SZ", dict(
                        COMP_INPUT, complaint_id="C-%d" % i), at=AT),
                    headers=CRM)
                assert st == 200, body
                cls.ids.append(body["decision_id"])
            st, _, body = cls.d.call("POST", "/v1/decisions",
                                     request("sla", "GD-SZ", SLA_INPUT),
                                     headers=CRM)
            assert st == 200, body
            cls.b = browser()
        except BaseException:
            cls.d.stop()
            raise

    def login(self):
        self.b.delete_all_cookies()
        self.b.get(self.url("/console/login"))
        self.check("login")
        self.b.find_element(By.ID, "token").send_keys(TOKENS["auditor"][1])
        submit(self.b, self.b.find_element(
            By.CSS_SELECTOR, "main form button[type=submit]"))

    def test_the_checker_finds_what_it_checks(self):
        """Each check fails on a page made to fail it."""
        self.login()
        self.b.get(self.url("/console/decisions"))
        self.b.execute_script("""
            var m = document.querySelector('main');
            m.insertAdjacentHTML('beforeend',
              '<input id="bare"><h4 id="deep">too deep</h4>' +
              '<p id="pale">pale</p>' +
              '<canvas id="mute"></canvas><img id="noalt" src="x.png">' +
              '<button id="empty"></button>' +
              '<div inert><a id="trap" href="#t">trapped</a></div>');
            // through the CSSOM: the console's CSP refuses style attributes
            document.getElementById('pale').style.color = '#bbb';""")
        problems = " | ".join(self.b.execute_script(CHECK))
        for want in ("no label: input#bare", "heading skips a level: h4#deep",
                     "< 4.5: p#pale", "no text alternative (role=img and a "
                     "label): canvas#mute", "img without alt: img#noalt",
                     "button without text: button#empty"):
            self.assertIn(want, problems)
        self.assertEqual(len(self.unreached()), 1)
        self.assertIn('id="trap"', self.unreached()[0])

    def test_every_page(self):
        self.login()
        pages = [
            ("decisions", "/console/decisions"),
            ("search", "/console/decisions?kind=compensation"),
            ("decision", "/console/decisions/" + self.ids[0]),
            ("revisions", "/console/revisions"),
            ("diff", "/console/revisions/diff?a=active&b=active"),
            ("files", "/console/revisions/files?revision=active"),
            ("health", "/console/health"),
            ("impact", "/console/impact"),
            ("no such page", "/console/nothing"),
        ]
        for what, path in pages:
            self.b.get(self.url(path))
            if what == "health":  # the chart drawn first
                WebDriverWait(self.b, 20).until(lambda b: b.execute_script(
                    "return !!(window.Chart && Chart.getChart("
                    "document.querySelector('canvas')))"))
            with self.subTest(page=what):
                self.check(what)
        # the replay button's answer
        self.b.get(self.url("/console/decisions/" + self.ids[0]))
        submit(self.b, self.b.find_element(
            By.CSS_SELECTOR, "form[action$='/replay'] button"))
        self.check("replayed")
        # an Impact run's result, and one changed decision's two versions
        path = os.path.join(self.policies, "national", "compensation.lua")
        with open(path) as f:
            src = f.read()
        def restore():
            with open(path, "w") as f:
                f.write(src)
        self.addCleanup(restore)
        with open(path, "w") as f:
            f.write(src.replace("multiplier = 2,", "multiplier = 3,", 1))
        self.b.get(self.url("/console/impact"))
        submit(self.b, self.b.find_element(By.ID, "run"))
        WebDriverWait(self.b, 60).until(
            lambda b: b.find_elements(By.CSS_SELECTOR, "#impact-state.done"))
        WebDriverWait(self.b, 20).until(lambda b: b.execute_script(
            "return !!(window.Chart && Chart.getChart("
            "document.getElementById('hist')))"))
        self.check("impact result")
        submit(self.b, self.b.find_element(By.LINK_TEXT,
                                           "baseline and candidate"))
        self.check("impact versions")


if __name__ == "__main__":
    unittest.main()
