"""The console's Impact run on a history large enough to watch: 100,000
real decisions (`verdict bench` through the daemon), replayed against a
changed policy directory by a verdictd held to one CPU (taskset), so the
run takes seconds on any machine.  Checks what a person sees in
Chromium: the progress as "N of 100,000 decisions", a second run refused
(409) while one runs, a cancel that asks for a confirmation and is
refused to another auditor, and a daemon stopping cancels the run
instead of waiting for it."""
import hashlib
import html
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

from harness import POLICIES, VERDICT
from test_console import (By, StaleElementReferenceException,
                          WebDriverException, WebDriverWait, browser, submit)
from test_console_a11y import PageChecks
from test_http import HttpDaemon

ROWS = 100000
ROWS_TEXT = "{:,}".format(ROWS)  # as the page writes it
# name, token, roles (one line per role in the tokens file)
CREDS = {"admin": ("tok-admin-impact", ("audit", "admin")),
         "auditor": ("tok-aud-impact", ("audit",)),
         "other": ("tok-other-impact", ("audit",))}


def write_tokens(path):
    with open(path, "w") as f:
        for name, (tok, roles) in CREDS.items():
            for role in roles:
                f.write("%s %s %s\n" % (
                    name, role, hashlib.sha256(tok.encode()).hexdigest()))


class ImpactRun(PageChecks, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="verdict-console-impact-")
        print("\ntest_console_impact: screenshots in", cls.tmp,
              file=sys.stderr)
        cls.tokens = os.path.join(cls.tmp, "tokens")
        write_tokens(cls.tokens)
        cls.policies = os.path.join(cls.tmp, "policies")
        shutil.copytree(POLICIES, cls.policies)
        cls.d = cls.start(cls.tmp)
        try:
            out = subprocess.run(
                [VERDICT, "bench", "--socket", cls.d.socket, "--requests",
                 str(ROWS), "--connections", "8", "--pipeline", "16"],
                capture_output=True, text=True, timeout=600)
            assert out.returncode == 0, out.stderr
            # the candidate: "the policy directory as it is now", with
            # double refunds made triple, so every decision changes
            path = os.path.join(cls.policies, "national", "compensation.lua")
            with open(path) as f:
                src = f.read()
            assert "multiplier = 2," in src
            with open(path, "w") as f:
                f.write(src.replace("multiplier = 2,", "multiplier = 3,", 1))
            cls.b = browser()
        except BaseException:
            cls.d.stop()
            raise

    @classmethod
    def start(cls, tmp, policies=None):
        return HttpDaemon(policies=policies or cls.policies, tmp=tmp,
                          args=["--tokens", cls.tokens],
                          prefix=("taskset", "-c", "0"))

    @classmethod
    def tearDownClass(cls):
        cls.b.quit()
        cls.d.stop()

    def setUp(self):
        self.wait_not_running(self.d)

    # -- plain HTTP, as another person's browser would send it ----------
    def page(self, d, who, method="GET", path="/console/impact", body=None):
        c = http.client.HTTPConnection("127.0.0.1", d.http_port, timeout=30)
        h = {"Authorization": "Bearer " + CREDS[who][0]}
        if body is not None:
            h["Content-Type"] = "application/x-www-form-urlencoded"
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        text = r.read().decode()
        c.close()
        return r.status, text

    def csrf(self, d, who):
        _, text = self.page(d, who)
        return re.search(r'name="csrf" value="([0-9a-f]+)"', text).group(1)

    def progress(self, d):
        """(done, total) while a run shows both, else None."""
        _, text = self.page(d, "auditor")
        m = re.search(r'id="impact-done">([\d,]+)</span> of '
                      r'<span id="impact-total">([\d,]+)', text)
        if not m:
            return None
        return tuple(int(x.replace(",", "")) for x in m.groups())

    def wait_not_running(self, d, timeout=300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if 'class="running"' not in self.page(d, "auditor")[1]:
                return
            time.sleep(0.2)
        self.fail("the Impact run did not end")

    def start_run(self, d, who):
        st, text = self.page(d, who, "POST", "/console/impact",
                             "csrf=%s&candidate=directory&baseline=active"
                             % self.csrf(d, who))
        self.assertEqual(st, 303, text)

    # -- in Chromium -----------------------------------------------------
    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.d.http_port, path)

    def login(self, who):
        self.b.delete_all_cookies()
        self.b.get(self.url("/console/login"))
        self.b.find_element(By.ID, "token").send_keys(CREDS[who][0])
        submit(self.b, self.b.find_element(
            By.CSS_SELECTOR, "main form button[type=submit]"))

    def press_cancel(self):
        """Press "Cancel this run...": the running page reloads itself
        every second, so a button found may be gone when clicked; press
        again until the confirmation page is there."""
        for _ in range(30):
            try:
                submit(self.b, self.b.find_element(By.ID, "cancel"))
            except (StaleElementReferenceException, WebDriverException):
                continue
            if self.b.find_element(By.TAG_NAME, "h1").text == \
                    "Cancel the replay?":
                return
        self.fail("the cancel button did not lead to its confirmation")

    def shot(self, name):
        self.b.save_screenshot(os.path.join(self.tmp, name + ".png"))

    def test_progress_of_a_total_and_one_run_at_a_time(self):
        self.login("auditor")
        self.b.get(self.url("/console/impact"))
        submit(self.b, self.b.find_element(By.ID, "run"))
        # the browser's page, refreshing itself, shows "N of 100,000"
        total = WebDriverWait(self.b, 120, poll_frequency=0.1).until(
            lambda b: b.find_elements(By.ID, "impact-total"))
        # the accessibility checks of every other page, on this one too
        # (no Tab walk: the page reloads itself every second)
        self.check("impact-running", tab=False)
        self.assertEqual(total[0].text, ROWS_TEXT)
        bar = self.b.find_element(By.ID, "impact-progress")
        self.assertEqual(bar.get_attribute("max"), str(ROWS))
        self.assertIn("of %s decisions" % ROWS_TEXT,
                      self.b.find_element(By.ID, "impact-state").text)
        # a second run, by someone else, while this one runs: 409
        st, text = self.page(self.d, "other", "POST", "/console/impact",
                             "csrf=%s&candidate=directory"
                             % self.csrf(self.d, "other"))
        self.assertEqual(st, 409, text)
        self.assertIn("A replay is running", text)
        # the count grows towards the total, and ends at it
        seen = set()
        while True:
            p = self.progress(self.d)
            if p is None:
                break
            self.assertEqual(p[1], ROWS)
            seen.add(p[0])
            time.sleep(0.05)
        self.assertTrue(any(0 < n < ROWS for n in seen), sorted(seen))
        state = WebDriverWait(self.b, 60).until(
            lambda b: b.find_elements(By.CSS_SELECTOR, "#impact-state.done"))
        self.shot("impact-done")
        self.assertIn("auditor", state[0].text)
        replayed = self.b.find_element(
            By.CSS_SELECTOR, "#impact-summary td[data-key=replayed]").text
        self.assertEqual(int(replayed), ROWS)
        self.assertEqual(int(self.b.find_element(
            By.CSS_SELECTOR, "#impact-summary td[data-key=material]").text),
            ROWS)

    def test_cancel_asks_first_and_only_for_its_starter_or_an_admin(self):
        self.login("admin")  # first: the browser is the slow part
        self.start_run(self.d, "auditor")
        while self.progress(self.d) is None:
            time.sleep(0.05)
        # another auditor may not cancel it, even confirmed
        st, text = self.page(self.d, "other", "POST", "/console/impact/cancel",
                             "csrf=%s&confirm=yes"
                             % self.csrf(self.d, "other"))
        self.assertEqual(st, 403, text)
        self.assertIn("Only auditor, who started this run", text)
        self.assertIsNotNone(self.progress(self.d))
        # an admin may: the button asks first, and "no" leaves it running
        self.b.get(self.url("/console/impact"))
        self.press_cancel()
        self.assertIn("started by auditor",
                      self.b.find_element(By.ID, "confirm-text").text)
        self.check("impact-cancel-confirm")
        submit(self.b, self.b.find_element(By.LINK_TEXT,
                                           "No, back to the run"))
        self.assertIsNotNone(self.progress(self.d))
        self.press_cancel()
        submit(self.b, self.b.find_element(By.ID, "confirm"))
        state = WebDriverWait(self.b, 60, poll_frequency=0.2).until(
            lambda b: b.find_elements(By.CSS_SELECTOR,
                                      "#impact-state.cancelled"))
        self.shot("impact-cancelled")
        m = re.search(r"Cancelled by admin after ([\d,]+) of %s "
                      r"decisions: the run started by auditor" % ROWS_TEXT,
                      state[0].text)
        self.assertIsNotNone(m, state[0].text)
        self.assertLess(int(m.group(1).replace(",", "")), ROWS)
        # no figures of a partial run
        self.assertEqual(self.b.find_elements(By.ID, "impact-summary"), [])
        # nothing left to cancel
        st, _ = self.page(self.d, "admin", "POST", "/console/impact/cancel",
                          "csrf=%s&confirm=yes" % self.csrf(self.d, "admin"))
        self.assertEqual(st, 409)

    def test_stopping_the_daemon_cancels_the_run(self):
        # a second daemon on a copy of the history, to stop (the policies
        # as shipped: the edited ones fail their own tests at start)
        tmp = tempfile.mkdtemp(prefix="verdict-console-stop-")
        self.addCleanup(shutil.rmtree, tmp, True)
        db = os.path.join(tmp, "verdict.db")
        subprocess.run(["sqlite3", self.d.db, ".backup '%s'" % db],
                       check=True)
        os.chmod(db, 0o640)
        d = self.start(tmp, POLICIES)
        try:
            self.start_run(d, "admin")
            p = None
            while p is None or p[0] == 0:
                p = self.progress(d)
                time.sleep(0.02)
            self.assertLess(p[0], ROWS)
            t = time.time()
            d.proc.send_signal(signal.SIGTERM)
            rc = d.proc.wait(timeout=120)
            took = time.time() - t
        finally:
            d.stop()
        log = d.read_log()
        self.assertEqual(rc, 0, log)
        m = re.search(r"Impact run started by admin was cancelled by the "
                      r"daemon, stopping after (\d+) of (\d+) decisions", log)
        self.assertIsNotNone(m, log)
        self.assertEqual(int(m.group(2)), ROWS)
        self.assertLess(int(m.group(1)), ROWS)
        self.assertLess(took, 30, log)


if __name__ == "__main__":
    unittest.main()
