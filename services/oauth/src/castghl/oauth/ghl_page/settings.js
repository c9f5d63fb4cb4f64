// Cast SMS settings inside GHL (a Custom Page of the Marketplace app).
// GHL tells the page who is signed in, encrypted with the app's Shared Secret; the page
// cannot read it and keeps no cookie: every request carries it to the server, which
// decrypts it and answers for that user's location only.
(function () {
  "use strict";
  var context = null;
  function $(id) { return document.getElementById(id); }

  function say(text, kind) {
    var box = $("message");
    box.textContent = text;
    box.className = kind || "";
  }

  async function call(path, fields) {
    var answer = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(Object.assign({ key: context }, fields || {})),
    });
    var body = await answer.json().catch(function () { return {}; });
    if (!answer.ok) { throw new Error(body.detail || "Cast SMS answered " + answer.status); }
    return body;
  }

  function show(state) {
    $("location").textContent = state.location_id;
    $("state").textContent = state.state_name;
    $("sender").textContent = state.sender_id || "the Cast account's default";
    $("account").textContent = state.cast_account;
    $("delivered").textContent = state.last_7_days ? state.last_7_days.delivered : "—";
    $("failed").textContent = state.last_7_days ? state.last_7_days.failed : "—";
    $("parts").textContent = state.last_7_days ? state.last_7_days.parts_sent : "—";
    $("sender_id").value = state.sender_id || "";
    $("edit").hidden = !state.can_edit;
    $("read-only").hidden = state.can_edit;
    $("loading").hidden = true;
    $("facts").hidden = false;
  }

  window.addEventListener("message", async function (event) {
    var data = event.data;
    if (!data || data.message !== "REQUEST_USER_DATA_RESPONSE") { return; }
    if (typeof data.payload !== "string") { return; }
    context = data.payload;
    try { show(await call("/ghl/settings/state")); } catch (error) { say(error.message, "error"); }
  });

  $("edit").addEventListener("submit", async function (event) {
    event.preventDefault();
    var fields = { sender_id: $("sender_id").value.trim() || null };
    var key = $("cast_api_key").value.trim();
    if (key) { fields.cast_api_key = key; }
    say("Checking with Cast…", "");
    try {
      show(await call("/ghl/settings/save", fields));
      $("cast_api_key").value = "";
      say("Saved. The next message uses it.", "ok");
    } catch (error) { say(error.message, "error"); }
  });

  if (window.parent === window) {
    say("Open this page inside GoHighLevel: it is the Cast SMS page of a location.", "error");
    return;
  }
  window.parent.postMessage({ message: "REQUEST_USER_DATA" }, "*");
})();
