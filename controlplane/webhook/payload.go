package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Payload renders ev in the target's format.
func Payload(f Format, ev Event) ([]byte, error) {
	var v any
	switch f {
	case FormatJSON:
		v = ev
	case FormatSlack:
		v = slackPayload(ev)
	case FormatTeams:
		v = teamsPayload(ev)
	default:
		return nil, fmt.Errorf("webhook: unknown format %q", f)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("webhook: encode %s payload: %w", f, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func headline(ev Event) string {
	switch ev.Type {
	case "approval.created":
		return "Approval needed"
	case "approval.approved":
		return "Approval granted"
	case "approval.denied":
		return "Approval denied"
	case "approval.expired":
		return "Approval expired"
	}
	return "Approval " + ev.Status
}

// facts are the lines every human-readable format shows, in order.
func facts(ev Event) [][2]string {
	out := [][2]string{
		{"Tenant", ev.Tenant}, {"Approval", ev.ApprovalID}, {"Status", ev.Status},
		{"Agent", ev.Agent}, {"Tool", ev.Tool},
	}
	if len(ev.Chain) > 1 {
		out = append(out, [2]string{"Chain", strings.Join(ev.Chain, " → ")})
	}
	if ev.RequestSummary != "" {
		out = append(out, [2]string{"Request", ev.RequestSummary})
	}
	if len(ev.Reasons) > 0 {
		out = append(out, [2]string{"Reasons", strings.Join(ev.Reasons, "; ")})
	}
	if len(ev.Approvers) > 0 {
		out = append(out, [2]string{"Approvers", strings.Join(ev.Approvers, ", ")})
	}
	if ev.Batched > 1 {
		out = append(out, [2]string{"Requests waiting", fmt.Sprint(ev.Batched)})
	}
	if ev.DecidedBy != "" {
		out = append(out, [2]string{"Decided by", ev.DecidedBy})
	}
	if !ev.ExpiresAt.IsZero() && ev.Status == "pending" {
		out = append(out, [2]string{"Expires", ev.ExpiresAt.UTC().Format(time.RFC3339)})
	}
	return out
}

// slackEscape escapes the three characters Slack's mrkdwn gives meaning
// to, so an agent-controlled string cannot form links or mentions.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func slackPayload(ev Event) any {
	var b strings.Builder
	for _, f := range facts(ev) {
		fmt.Fprintf(&b, "*%s:* %s\n", f[0], slackEscape(f[1]))
	}
	title := headline(ev) + ": " + slackEscape(ev.Agent) + " → " + slackEscape(ev.Tool)
	type text struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	type block struct {
		Type string `json:"type"`
		Text text   `json:"text"`
	}
	return struct {
		Text   string  `json:"text"`
		Blocks []block `json:"blocks"`
	}{
		Text: title,
		Blocks: []block{
			{Type: "header", Text: text{Type: "plain_text", Text: truncate(headline(ev)+": "+ev.Agent+" → "+ev.Tool, 150)}},
			{Type: "section", Text: text{Type: "mrkdwn", Text: truncate(b.String(), 3000)}},
		},
	}
}

func teamsPayload(ev Event) any {
	type fact struct {
		Title string `json:"title"`
		Value string `json:"value"`
	}
	var fs []fact
	for _, f := range facts(ev) {
		fs = append(fs, fact{f[0], f[1]})
	}
	card := map[string]any{
		"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
		"type":    "AdaptiveCard",
		"version": "1.4",
		"body": []any{
			map[string]any{"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true, "text": headline(ev) + ": " + ev.Agent + " → " + ev.Tool},
			map[string]any{"type": "FactSet", "facts": fs},
		},
	}
	return map[string]any{
		"type": "message",
		"attachments": []any{map[string]any{
			"contentType": "application/vnd.microsoft.card.adaptive",
			"content":     card,
		}},
	}
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
