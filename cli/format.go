package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"text/template"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// newTable returns a tabwriter laid out like docker's listings.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
}

// escapeText makes a string from the cluster state safe to print on a
// terminal: every control or other non-printable character, and every byte
// that is not valid UTF-8, is written as a Go escape (\n, \t, \x1b,
// \u202e, \xff), so a hostname, label or task error can neither add lines
// to a table nor send escape sequences to the terminal. Printable text,
// non-ASCII letters included, is unchanged. Every table cell, --pretty
// value, template field and error line goes through it; JSON output does
// not need it (encoding/json escapes control characters itself).
func escapeText(s string) string {
	if safeText(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || !unicode.IsPrint(r) {
			q := strconv.Quote(s[i : i+size]) // "\x1b", "\n", "\u202e"
			b.WriteString(q[1 : len(q)-1])
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func safeText(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			// Control characters, DEL, or non-ASCII: look closer.
			for _, r := range s[i:] {
				if r == utf8.RuneError || !unicode.IsPrint(r) {
					return false
				}
			}
			return utf8.ValidString(s)
		}
	}
	return true
}

// writeCells writes one table row: the cells, escaped, tab-separated.
func writeCells(w io.Writer, cells ...string) {
	for i, c := range cells {
		cells[i] = escapeText(c)
	}
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

// escapedRow returns a copy of a row struct with its string fields
// escaped, for a --format template: the template's own text (tabs and
// newlines included) is the user's, the values are the cluster's.
func escapedRow(row any) any {
	v := reflect.ValueOf(row)
	if v.Kind() != reflect.Struct {
		return row
	}
	c := reflect.New(v.Type()).Elem()
	c.Set(v)
	for i := 0; i < c.NumField(); i++ {
		if f := c.Field(i); f.Kind() == reflect.String && f.CanSet() {
			f.SetString(escapeText(f.String()))
		}
	}
	return c.Interface()
}

// templateFuncs are available in --format templates.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
	"join":  strings.Join,
}

// rowFormatter prints rows with a user --format: "json" or a Go template.
type rowFormatter struct {
	json bool
	tmpl *template.Template
}

// parseFormat compiles a --format value.
func parseFormat(format string) (*rowFormatter, error) {
	if strings.TrimSpace(format) == "json" || strings.TrimSpace(format) == "{{json .}}" {
		return &rowFormatter{json: true}, nil
	}
	// Allow docker-style escapes such as \t in the template.
	format = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(format)
	t, err := template.New("format").Funcs(templateFuncs).Option("missingkey=error").Parse(format)
	if err != nil {
		return nil, fmt.Errorf("invalid --format template: %v", oneLine(err))
	}
	return &rowFormatter{tmpl: t}, nil
}

// write prints one row, followed by a newline.
func (f *rowFormatter) write(w io.Writer, row any, fields []string) error {
	if f.json {
		b, err := json.Marshal(row)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	var buf bytes.Buffer
	if err := f.tmpl.Execute(&buf, escapedRow(row)); err != nil {
		return fmt.Errorf("invalid --format template: %v (fields: %s)", oneLine(err), strings.Join(fields, " "))
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// writeRows renders every row into memory first so that a template error
// prints nothing but the error.
func (f *rowFormatter) writeRows(w io.Writer, rows []any, fields []string) error {
	var buf bytes.Buffer
	for _, r := range rows {
		if err := f.write(&buf, r, fields); err != nil {
			return err
		}
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// oneLine renders an error as one printable line.
func oneLine(err error) string {
	return escapeText(strings.ReplaceAll(err.Error(), "\n", " "))
}

// marshalObject renders a protobuf message as a JSON object with stable
// formatting; extra keys are merged in at the top level.
func marshalObject(m proto.Message, extra map[string]any) (json.RawMessage, error) {
	b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	obj := map[string]json.RawMessage{}
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, err
	}
	for k, v := range extra {
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		obj[k] = raw
	}
	return json.Marshal(obj)
}

// writeJSONArray prints objects as an indented JSON array.
func writeJSONArray(w io.Writer, objs []json.RawMessage) error {
	if objs == nil {
		objs = []json.RawMessage{}
	}
	b, err := json.Marshal(objs)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "    "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

// titleWord turns "NODE_STATUS_READY"-like suffixes ("READY") into "Ready".
func titleWord(s string) string {
	s = strings.ToLower(strings.ReplaceAll(s, "_", " "))
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// listPrelude parses a list command's optional --format and connects to
// the daemon: how every list command starts.
func (a *app) listPrelude(format string) (*rowFormatter, swarmpb.ControlClient, error) {
	var fmtr *rowFormatter
	if format != "" {
		var err error
		if fmtr, err = parseFormat(format); err != nil {
			return nil, nil, err
		}
	}
	ctl, err := a.control()
	return fmtr, ctl, err
}
