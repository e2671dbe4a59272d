/* What the browser's WebRTC pages share (the web call F-74, the supervisor console
 * F-75): the ICE servers the page was given (WEBRTC_ICE_SERVERS), waiting for ICE
 * gathering, opening the microphone with the reasons it can fail, an audio level.
 * No framework: pages use window.CCWebRTC. */
(function () {
  "use strict";

  /* The ICE servers rendered with json_script into the element `id`. */
  function iceServers(id) {
    const el = document.getElementById(id);
    return el ? JSON.parse(el.textContent || "[]") : [];
  }

  /* Resolves once ICE gathering completes, or after 3 s with what was gathered. */
  function iceGathered(connection) {
    if (connection.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (connection.iceGatheringState === "complete") resolve(); };
      connection.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 3000);
    });
  }

  /* The microphone's stream. Rejects with an Error whose `kind` is "unsupported",
   * "denied" (refused by the user or the page's policy) or "no-device". */
  async function openMicrophone() {
    const fail = (kind) => Object.assign(new Error(kind), { kind });
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.RTCPeerConnection) {
      throw fail("unsupported");
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (error) {
      const name = error && error.name;
      throw fail(name === "NotAllowedError" || name === "SecurityError" ? "denied" : "no-device");
    }
    if (!stream.getAudioTracks()[0]) throw fail("no-device");
    return stream;
  }

  /* RMS of what an AnalyserNode holds now (0…1). */
  function level(analyser, buffer) {
    analyser.getFloatTimeDomainData(buffer);
    let sum = 0;
    for (let i = 0; i < buffer.length; i++) sum += buffer[i] * buffer[i];
    return Math.sqrt(sum / buffer.length);
  }

  window.CCWebRTC = { iceServers, iceGathered, openMicrophone, level };
})();
