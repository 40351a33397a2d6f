package policy

import (
	"encoding/base64"
	"errors"
)

func errorsIs(err, target error) bool     { return errors.Is(err, target) }
func errorsAs(err error, target any) bool { return errors.As(err, target) }
func b64(b []byte) string                 { return base64.StdEncoding.EncodeToString(b) }
