/* The supervisor console on a live call's monitor (F-75). Loaded only for operators
 * with calls.supervise_call.
 *
 * Listen: an RTCPeerConnection whose offer has, in this order, transceiver 0
 * recvonly (the caller's audio), 1 recvonly (the AI's audio as the caller hears
 * it), 2 sendonly (this supervisor's microphone, no track until barge / take
 * over) and a data channel "events" that carries a ping every second (the server
 * counts a listener gone after 3 s without one). The offer is POSTed to
 * /calls/<id>/supervise/offer/; the answer names this page's listener id.
 * Both sides play through WebAudio (a gain each, set by the balance control) and
 * are measured by an AnalyserNode each: every 100 ms the meters' value and
 * `data-level` (RMS 0…1) are updated, for the eye and for the browser tests.
 * Barge / take over: the microphone's track goes on transceiver 2's sender
 * (replaceTrack, no renegotiation), then the API is told; whisper, barge end and
 * hand back are API calls (POST /api/calls/<id>/supervise/). Who holds the call
 * comes live from the monitor socket's `call.supervision` (monitor.js hands it
 * over as a `cc:supervision` event). window.__supervise exposes figures for tests.
 */
(function () {
  "use strict";
  const root = document.getElementById("call");
  const panel = root && root.querySelector("[data-supervise]");
  if (!panel || !window.CCWebRTC) return;
  const { iceGathered, openMicrophone, level } = window.CCWebRTC;
  const $ = (sel) => panel.querySelector(sel);
  const buttons = {
    listen: $('[data-supervise-action="listen"]'),
    barge: $('[data-supervise-action="barge"]'),
    takeOver: $('[data-supervise-action="take-over"]'),
    handBack: $('[data-supervise-action="hand-back"]'),
  };
  const whisper = $("[data-supervise-whisper]");
  const balance = $("[data-balance]");
  const holderLine = $("[data-holder]");
  const result = $("[data-supervise-result]");
  const meters = { caller: $('[data-level-meter="caller"]'), ai: $('[data-level-meter="ai"]') };
  const iceServers = window.CCWebRTC.iceServers("supervise-ice-servers");
  const PING_EVERY_MS = 1000;
  const METER_EVERY_MS = 100;

  const figures = (window.__supervise = {
    state: "idle", listener: null, mode: null, holder: null, pings: 0,
    callerLevelMax: 0, aiLevelMax: 0, error: null,
  });
  let pc = null, channel = null, audioContext = null, mic = null, micSender = null;
  let pingTimer = null, meterTimer = null;
  const sides = {};  // caller / ai: {element, analyser, buffer, gain}

  function text(name) {
    return result.dataset["text" + name.replace(/(^|-)(\w)/g, (m, d, c) => c.toUpperCase())] || name;
  }
  function say(name, ok, detail) {
    result.textContent = detail ? text(name) + " (" + detail + ")" : text(name);
    result.className = "control-result " + (ok ? "ok" : "error");
    result.setAttribute("role", ok ? "status" : "alert");
    if (!ok) figures.error = name;
  }
  function toggle(button, on) {
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.textContent = on ? button.dataset.textOn : button.dataset.textOff;
  }
  function refreshButtons() {
    const listening = figures.state === "listening";
    toggle(buttons.listen, figures.state !== "idle");
    toggle(buttons.barge, figures.mode === "barge");
    buttons.barge.disabled = figures.mode === "take-over";
    buttons.takeOver.disabled = figures.mode !== null;
    buttons.handBack.disabled = figures.holder !== "supervisor" || figures.mode === "barge";
    buttons.listen.disabled = figures.state === "connecting";
    if (!listening) meters.caller.value = meters.ai.value = 0;
    if (root.dataset.live !== "true") Object.values(buttons).forEach((b) => { b.disabled = true; });
  }

  function showHolder(holder, mode, name) {
    figures.holder = holder;
    const line = holder === "ai" ? holderLine.dataset.textAi
      : (mode === "barge" ? holderLine.dataset.textBarge : holderLine.dataset.textSupervisor);
    holderLine.textContent = line.replace("{name}", name || "?");
    // Handed back by someone else, or after this page's connection was lost.
    if (holder === "ai" && figures.mode) releaseMic();
    refreshButtons();
  }

  function setGains() {
    const b = Number(balance.value);
    if (sides.caller) sides.caller.gain.gain.value = Math.min(1, 1 - b);
    if (sides.ai) sides.ai.gain.gain.value = Math.min(1, 1 + b);
  }

  function attach(side, stream) {
    // Chrome moves a remote track's audio into WebAudio only while a media element
    // plays it too: muted, so the sound comes once, through the gains.
    const element = new Audio();
    element.muted = true;
    element.srcObject = stream;
    element.play().catch(() => {});
    const source = audioContext.createMediaStreamSource(stream);
    const analyser = audioContext.createAnalyser();
    const gain = audioContext.createGain();
    source.connect(analyser);
    source.connect(gain).connect(audioContext.destination);
    sides[side] = { element, analyser, gain, buffer: new Float32Array(analyser.fftSize) };
    setGains();
  }

  function measure() {
    for (const side of ["caller", "ai"]) {
      const s = sides[side];
      const value = s ? level(s.analyser, s.buffer) : 0;
      meters[side].value = Math.min(1, value * 4);
      meters[side].dataset.level = value.toFixed(4);
      figures[side + "LevelMax"] = Math.max(figures[side + "LevelMax"], value);
    }
  }

  function opusOnly(transceiver) {
    if (!transceiver.setCodecPreferences || !window.RTCRtpReceiver.getCapabilities) return;
    const codecs = RTCRtpReceiver.getCapabilities("audio").codecs.filter((c) => /opus/i.test(c.mimeType));
    try { transceiver.setCodecPreferences(codecs); } catch (e) { /* the browser's default order */ }
  }

  async function postJson(url, body) {
    const reply = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": window.CC.csrfToken() },
      body: JSON.stringify(body),
    });
    const data = await reply.json().catch(() => ({}));
    return { ok: reply.ok, status: reply.status, data };
  }
  function failure(reply) {
    const error = reply.data && reply.data.error;
    const detail = error && typeof error === "object" ? error.message : error;
    const name = reply.status === 403 ? "forbidden" : reply.status === 409 ? "not-live"
      : reply.status === 504 ? "timeout" : "failed";
    say(name, false, name === "failed" ? detail || "HTTP " + reply.status : "");
  }

  async function listen() {
    if (!window.RTCPeerConnection) { say("unsupported", false); return false; }
    figures.state = "connecting";
    refreshButtons();
    say("connecting", true);
    audioContext = new (window.AudioContext || window.webkitAudioContext)();
    audioContext.resume().catch(() => {});
    const connection = (pc = new RTCPeerConnection({ iceServers }));
    const callerSide = pc.addTransceiver("audio", { direction: "recvonly" });
    const aiSide = pc.addTransceiver("audio", { direction: "recvonly" });
    const micSide = pc.addTransceiver("audio", { direction: "sendonly" });
    [callerSide, aiSide, micSide].forEach(opusOnly);
    micSender = micSide.sender;
    channel = pc.createDataChannel("events");
    pc.ontrack = (event) => {
      const stream = event.streams[0] || new MediaStream([event.track]);
      attach(event.transceiver === callerSide ? "caller" : "ai", stream);
    };
    pc.onconnectionstatechange = () => {
      if (connection !== pc) return;
      if (pc.connectionState === "failed" || pc.connectionState === "closed") stopListening("lost");
    };
    pingTimer = setInterval(() => {
      if (channel && channel.readyState === "open") {
        channel.send(JSON.stringify({ type: "ping" }));
        figures.pings += 1;
      }
    }, PING_EVERY_MS);
    meterTimer = setInterval(measure, METER_EVERY_MS);
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await iceGathered(pc);
      const reply = await postJson(panel.dataset.offerUrl, { sdp: pc.localDescription.sdp });
      if (connection !== pc) return false;
      if (!reply.ok) { failure(reply); stopListening(null); return false; }
      figures.listener = reply.data.listener;
      await pc.setRemoteDescription({ type: "answer", sdp: reply.data.sdp });
    } catch (error) {
      say("failed", false, String(error));
      stopListening(null);
      return false;
    }
    figures.state = "listening";
    say("listening", true);
    refreshButtons();
    return true;
  }

  function releaseMic() {
    if (micSender) micSender.replaceTrack(null).catch(() => {});
    if (mic) { mic.getTracks().forEach((t) => t.stop()); mic = null; }
    figures.mode = null;
  }

  function stopListening(why) {
    clearInterval(pingTimer);
    clearInterval(meterTimer);
    pingTimer = meterTimer = null;
    releaseMic();
    if (pc) { const old = pc; pc = null; try { old.close(); } catch (e) { /* gone */ } }
    for (const side of Object.keys(sides)) { sides[side].element.srcObject = null; delete sides[side]; }
    if (audioContext) { audioContext.close().catch(() => {}); audioContext = null; }
    channel = micSender = null;
    figures.state = "idle";
    figures.listener = null;
    if (why) say(why, why === "stopped");
    refreshButtons();
  }

  /* Barge or take over: the microphone on transceiver 2, then the API. */
  async function step(action, mode) {
    if (figures.state !== "listening" && !(await listen())) return;
    try {
      mic = await openMicrophone();
    } catch (error) {
      say(error.kind || "no-device", false);
      return;
    }
    await micSender.replaceTrack(mic.getAudioTracks()[0]);
    figures.mode = mode;
    refreshButtons();
    const reply = await postJson(panel.dataset.apiUrl, { action, listener: figures.listener });
    if (!reply.ok) { releaseMic(); failure(reply); refreshButtons(); return; }
    say(mode, true);
    showHolder(reply.data.holder || "supervisor", mode, panel.dataset.me);
  }

  /* Barge end or hand back: the API, then the microphone goes. */
  async function release(action) {
    const reply = await postJson(panel.dataset.apiUrl, { action });
    if (!reply.ok) { failure(reply); return; }
    releaseMic();
    say("handed-back", true);
    showHolder(reply.data.holder || "ai", null, "");
  }

  async function run(button, work) {
    button.disabled = true;
    try { await work(); } catch (error) { say("failed", false, String(error)); }
    refreshButtons();
  }

  buttons.listen.addEventListener("click", () => run(buttons.listen, async () => {
    if (figures.state === "idle") { await listen(); return; }
    if (figures.mode) await release(figures.mode === "barge" ? "barge_end" : "hand_back");
    stopListening("stopped");
  }));
  buttons.barge.addEventListener("click", () => run(buttons.barge, () =>
    figures.mode === "barge" ? release("barge_end") : step("barge", "barge")));
  buttons.takeOver.addEventListener("click", () => run(buttons.takeOver, () => step("take_over", "take-over")));
  buttons.handBack.addEventListener("click", () => run(buttons.handBack, () => release("hand_back")));
  whisper.addEventListener("submit", (event) => {
    event.preventDefault();
    const button = whisper.querySelector("button");
    run(button, async () => {
      const reply = await postJson(panel.dataset.apiUrl, { action: "whisper", text: whisper.elements.text.value });
      if (!reply.ok) { failure(reply); return; }
      whisper.reset();
      say("sent", true);
    });
  });
  // A call with a human in the conference: the supervisor's phone joins it, muted
  // or coaching the human (the API dials it).
  const phoneForm = $("[data-supervise-phone]");
  if (phoneForm) phoneForm.addEventListener("submit", (event) => {
    event.preventDefault();
    run(phoneForm.querySelector("button"), async () => {
      const body = { action: "listen_phone", coaching: phoneForm.elements.coaching.checked };
      if (phoneForm.elements.phone.value) body.phone = phoneForm.elements.phone.value;
      const reply = await postJson(panel.dataset.apiUrl, body);
      if (!reply.ok) { failure(reply); return; }
      say("dialling", true);
    });
  });
  balance.addEventListener("input", () => {
    setGains();
    // Said as "<side> 40%" (the side heard louder), or the centre's word.
    const b = Number(balance.value);
    const side = panel.querySelector('label[for="supervise-level-' + (b < 0 ? "caller" : "ai") + '"]');
    balance.setAttribute("aria-valuetext", b === 0 ? balance.dataset.textCentre
      : side.textContent + " " + Math.round(Math.abs(b) * 100) + "%");
  });
  root.addEventListener("cc:supervision", (event) => {
    const msg = event.detail || {};
    showHolder(msg.holder, msg.mode, msg.by_name);
  });
  // The call ended (monitor.js sets data-live): nothing here can act any more.
  new MutationObserver(() => {
    if (root.dataset.live === "true") return;
    if (pc) stopListening("stopped");
    panel.querySelectorAll("button, input").forEach((el) => { el.disabled = true; });
  }).observe(root, { attributes: true, attributeFilter: ["data-live"] });
  // Leaving the page ends this listener at once (the server's grace period runs
  // from here when it held the call).
  window.addEventListener("pagehide", () => { if (pc) pc.close(); });
  figures.holder = buttons.handBack.disabled ? "ai" : "supervisor";
  refreshButtons();
})();
