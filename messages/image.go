package messages

import (
	"encoding/base64"
	"strings"
)

// validateImage checks an image field: a data URL (`data:image/png;base64,…`)
// or bare base64, of an allowed type, that decodes. The declared type must
// match the bytes, so a file cannot pass as another kind. It allocates only
// the few bytes it sniffs.
func validateImage(image string, mimeType Str, allowed []string) error {
	declared := mimeType.V
	data := image
	if strings.HasPrefix(image, "data:") {
		comma := strings.IndexByte(image, ',')
		if comma < 0 {
			return &PayloadError{Code: CodeInvalidPayload, Field: "image", Reason: "is a data URL without data"}
		}
		meta := image[len("data:"):comma]
		if !strings.HasSuffix(meta, ";base64") {
			return &PayloadError{Code: CodeInvalidPayload, Field: "image", Reason: "must be base64-encoded"}
		}
		declared = strings.TrimSuffix(meta, ";base64")
		data = image[comma+1:]
	}
	if len(allowed) > 0 {
		if declared == "" {
			return &PayloadError{Code: CodeInvalidType, Field: "mimeType", Reason: "is required for a bare base64 image"}
		}
		if !contains(allowed, strings.ToLower(declared)) {
			return &PayloadError{Code: CodeInvalidType, Field: "image", Reason: "type " + declared + " is not allowed"}
		}
	}
	if !validBase64(data) {
		return &PayloadError{Code: CodeInvalidPayload, Field: "image", Reason: "is not valid base64"}
	}
	if len(allowed) > 0 {
		var head [18]byte // what 24 base64 characters decode to
		n, _ := base64.StdEncoding.Decode(head[:], []byte(data[:min(len(data), 24)]))
		if sniffed := sniff(head[:n]); sniffed != strings.ToLower(declared) {
			return &PayloadError{Code: CodeInvalidType, Field: "image", Reason: "content is not " + declared}
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// validBase64 checks standard base64 (with or without padding) without
// decoding it: a 10 MB image costs one pass and no allocation.
func validBase64(s string) bool {
	n := len(s)
	for n > 0 && s[n-1] == '=' {
		n--
	}
	if len(s)-n > 2 || n == 0 || (len(s)-n > 0 && len(s)%4 != 0) || n%4 == 1 {
		return false
	}
	for i := 0; i < n; i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// sniff names an image's type from its first bytes.
func sniff(b []byte) string {
	switch {
	case len(b) >= 8 && string(b[:8]) == "\x89PNG\r\n\x1a\n":
		return "image/png"
	case len(b) >= 3 && string(b[:3]) == "\xff\xd8\xff":
		return "image/jpeg"
	case len(b) >= 6 && (string(b[:6]) == "GIF87a" || string(b[:6]) == "GIF89a"):
		return "image/gif"
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return "image/webp"
	}
	return ""
}
