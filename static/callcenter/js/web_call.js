/* The web voice channel's page (F-74): /agents/<id>/try/ and /talk/<public id>/.
 *
 * Start: ask for the microphone (no call when it is refused or missing), open an
 * RTCPeerConnection with the mic track and an "events" data channel, gather ICE,
 * POST the offer as JSON (CSRF header; the public page adds its signed token),
 * apply the answer. The AI's audio plays in an <audio> element (Chrome's echo
 * canceller only references audio that arrives over a peer connection). Every
 * 100 ms the page reports the RTP timestamp it has played
 * (getSynchronizationSources()) so a barge-in truncates at what was heard.
 * The data channel brings the call state, transcript lines, the AI's speaking
 * state and errors. window.__webCall exposes figures for the browser tests.
 */
(function () {
  "use strict";
  const root = document.getElementById("web-call");
  if (!root) return;
  const $ = (sel) => root.querySelector(sel);
  const startButton = $("[data-start]");
  const hangupButton = $("[data-hangup]");
  const stateLine = $("[data-state]");
  const errorLine = $("[data-error]");
  const micMeter = $("[data-mic-level]");
  const speaking = $("[data-ai-speaking]");
  const remoteAudio = $("[data-remote-audio]");
  const transcript = document.getElementById("transcript");
  const customerSelect = document.getElementById("web-call-customer");
  const monitorLink = root.querySelector("[data-monitor-link]");
  const { iceServers: readIceServers, iceGathered, openMicrophone, level } = window.CCWebRTC;
  const iceServers = readIceServers("web-call-ice-servers");
  const csrf = (root.querySelector("input[name=csrfmiddlewaretoken]") || {}).value || "";

  const figures = (window.__webCall = {
    callId: null, state: "idle", remoteLevelMax: 0, micLevelMax: 0,
    events: [], reports: 0, error: null,
  });
  let pc = null, channel = null, mic = null, audioContext = null;
  let reportTimer = null, meterTimer = null, live = false;
  const partials = new Map();

  function setState(name) {
    figures.state = name;
    stateLine.textContent = stateLine.dataset["text" + name.charAt(0).toUpperCase() + name.slice(1)] || name;
  }
  function showError(kind, detail) {
    figures.error = kind;
    const text = errorLine.dataset["text" + kind.replace(/(^|-)(\w)/g, (m, d, c) => c.toUpperCase())];
    errorLine.textContent = text || detail || kind;
    errorLine.hidden = false;
  }
  function clearError() { errorLine.hidden = true; errorLine.textContent = ""; figures.error = null; }
  function setLive(on) {
    live = on;
    startButton.hidden = on;
    startButton.disabled = false;
    hangupButton.hidden = !on;
  }

  function line(speaker, itemId) {
    const empty = transcript.querySelector("[data-empty]");
    if (empty) empty.remove();
    const li = document.createElement("li");
    li.className = "utterance speaker-" + speaker;
    if (itemId) li.dataset.itemId = itemId;
    const who = document.createElement("span");
    who.className = "speaker";
    who.textContent = transcript.dataset["label" + speaker.charAt(0).toUpperCase() + speaker.slice(1)] || speaker;
    const text = document.createElement("p");
    text.className = "text";
    li.append(who, text);
    transcript.append(li);
    transcript.scrollTop = transcript.scrollHeight;
    return li;
  }
  function onPartial(event) {
    const key = event.speaker + ":" + event.item_id;
    let li = partials.get(key);
    if (!li) { li = line(event.speaker, event.item_id); li.classList.add("partial"); partials.set(key, li); }
    li.querySelector(".text").textContent += event.delta;
  }
  function onTranscript(event) {
    const key = event.speaker + ":" + event.item_id;
    let li = partials.get(key);
    partials.delete(key);
    if (!li) li = line(event.speaker, event.item_id);
    li.classList.remove("partial");
    li.dataset.entryId = event.entry_id;
    li.querySelector(".text").textContent = event.text;
  }

  function onEvent(message) {
    let event;
    try { event = JSON.parse(message.data); } catch (e) { return; }
    figures.events.push(event.type);
    if (event.type === "state") {
      if (event.state === "live") { setState("live"); } else { showError("failed"); end(false); }
    } else if (event.type === "partial") { onPartial(event); }
    else if (event.type === "transcript") { onTranscript(event); }
    else if (event.type === "ai-speaking") { speaking.hidden = !event.speaking; }
    else if (event.type === "error") { showError("model", event.detail); }
    else if (event.type === "ended") { end(false); }
  }

  function startMeters(localStream) {
    const micAnalyser = audioContext.createAnalyser();
    audioContext.createMediaStreamSource(localStream).connect(micAnalyser);
    const micBuffer = new Float32Array(micAnalyser.fftSize);
    let remoteAnalyser = null, remoteBuffer = null;
    figures.attachRemote = (stream) => {
      remoteAnalyser = audioContext.createAnalyser();
      audioContext.createMediaStreamSource(stream).connect(remoteAnalyser);
      remoteBuffer = new Float32Array(remoteAnalyser.fftSize);
    };
    meterTimer = setInterval(() => {
      const mine = level(micAnalyser, micBuffer);
      micMeter.value = Math.min(1, mine * 4);
      figures.micLevelMax = Math.max(figures.micLevelMax, mine);
      if (remoteAnalyser) figures.remoteLevelMax = Math.max(figures.remoteLevelMax, level(remoteAnalyser, remoteBuffer));
    }, 50);
  }

  function reportPlayback() {
    if (!pc || !channel || channel.readyState !== "open") return;
    const receiver = pc.getReceivers().find((r) => r.track && r.track.kind === "audio");
    if (!receiver || !receiver.getSynchronizationSources) return;
    const source = receiver.getSynchronizationSources()[0];
    if (!source || typeof source.rtpTimestamp !== "number") return;
    let age = performance.timeOrigin + performance.now() - source.timestamp;
    if (!(age >= 0 && age < 1000)) age = 0;  // another clock: take the report as fresh
    channel.send(JSON.stringify({ type: "played", rtp: source.rtpTimestamp, age_ms: Math.round(age) }));
    figures.reports += 1;
  }

  async function start() {
    clearError();
    startButton.disabled = true;
    // Mobile Safari lets audio start only inside the tap itself, before any await:
    // create the audio context and unlock the <audio> element now.
    audioContext = new (window.AudioContext || window.webkitAudioContext)();
    audioContext.resume().catch(() => {});
    remoteAudio.play().catch(() => {});
    setState("mic");
    try {
      mic = await openMicrophone();
    } catch (error) {
      showError(error.kind || "no-device");
      setState("idle"); startButton.disabled = false;
      if (audioContext) { audioContext.close().catch(() => {}); audioContext = null; }
      return;
    }
    const track = mic.getAudioTracks()[0];
    track.addEventListener("ended", () => { if (live || pc) { showError("device-lost"); hangUp(); } });
    setState("connecting");
    startMeters(mic);
    const connection = (pc = new RTCPeerConnection({ iceServers }));
    pc.addTrack(track, mic);
    channel = pc.createDataChannel("events");
    // Events of an earlier call's connection must not touch this one.
    channel.onmessage = (message) => { if (connection === pc) onEvent(message); };
    pc.ontrack = (event) => {
      const stream = event.streams[0] || new MediaStream([event.track]);
      remoteAudio.srcObject = stream;
      remoteAudio.play().catch(() => {});
      if (figures.attachRemote) figures.attachRemote(stream);
    };
    pc.onconnectionstatechange = () => {
      if (connection !== pc) return;
      if (pc.connectionState === "failed" || pc.connectionState === "closed") {
        if (live) showError("failed");
        end(false);
      }
    };
    setLive(true);
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await iceGathered(pc);
      const body = { type: "offer", sdp: pc.localDescription.sdp };
      if (root.dataset.token) body.token = root.dataset.token;
      if (customerSelect && customerSelect.value) body.customer_id = customerSelect.value;
      const reply = await fetch(root.dataset.offerUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        credentials: "same-origin",
        body: JSON.stringify(body),
      });
      const data = await reply.json().catch(() => ({}));
      if (!reply.ok) {
        const details = (data.error && data.error.details) || {};
        showError(reply.status === 403 && details.expired ? "expired" : (reply.status === 429 || reply.status === 503 ? "busy" : "failed"),
          data.error && data.error.message);
        end(false);
        return;
      }
      figures.callId = data.call_id;
      if (monitorLink && data.monitor_url) {
        monitorLink.querySelector("a").href = data.monitor_url;
        monitorLink.hidden = false;
      }
      await pc.setRemoteDescription({ type: "answer", sdp: data.sdp });
      reportTimer = setInterval(reportPlayback, 100);
    } catch (error) {
      showError("failed", String(error));
      end(false);
    }
  }

  function hangUp() {
    if (channel && channel.readyState === "open") {
      try { channel.send(JSON.stringify({ type: "hangup" })); } catch (e) { /* closing */ }
    }
    // Give the hang-up 150 ms to leave, then end this call only: a call started
    // in the meantime (the server's "ended" came first) is not touched.
    const connection = pc;
    setTimeout(() => { if (pc === connection) end(true); }, 150);
  }

  function end(byUs) {
    if (reportTimer) clearInterval(reportTimer);
    if (meterTimer) clearInterval(meterTimer);
    reportTimer = meterTimer = null;
    if (pc) { const old = pc; pc = null; try { old.close(); } catch (e) { /* gone */ } }
    if (mic) { mic.getTracks().forEach((t) => t.stop()); mic = null; }
    if (audioContext) { audioContext.close().catch(() => {}); audioContext = null; }
    channel = null;
    speaking.hidden = true;
    micMeter.value = 0;
    const wasLive = live;
    setLive(false);
    if (wasLive || byUs) setState("ended"); else if (figures.state !== "ended") setState("idle");
  }

  startButton.addEventListener("click", start);
  hangupButton.addEventListener("click", hangUp);
})();
