"""The legacy Gather path (F-72): Twilio's `<Gather input="speech">` → a text model
(OpenAI Responses API) → `<Say>` → the next `<Gather>`, with the Realtime path's
prompt, tools, transcript, events and figures."""
