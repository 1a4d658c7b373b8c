package netstack_test

import (
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestSameAPIEverywhere checks that the package offers the same exported
// names and signatures when built for Linux and for systems without links
// (other.go): a program that builds on a laptop builds for the appliance,
// and the other way round. Data types are shared (types.go); this catches
// a Stack or Link method added on one side only.
func TestSameAPIEverywhere(t *testing.T) {
	linux := exportedAPI(t, "linux")
	for _, goos := range []string{"darwin", "windows", "freebsd"} {
		other := exportedAPI(t, goos)
		for _, d := range linux {
			if !slices.Contains(other, d) {
				t.Errorf("%s: missing %s (declared for linux)", goos, d)
			}
		}
		for _, d := range other {
			if !slices.Contains(linux, d) {
				t.Errorf("linux: missing %s (declared for %s)", d, goos)
			}
		}
	}
}

// exportedAPI lists the package's exported declarations as built for goos,
// one string each: functions and methods with their parameter and result
// types, type, constant and variable names.
func exportedAPI(t *testing.T, goos string) []string {
	t.Helper()
	ctx := build.Default
	ctx.GOOS = goos
	ctx.CgoEnabled = false
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var api []string
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		if ok, err := ctx.MatchFile(".", name); err != nil {
			t.Fatal(err)
		} else if !ok {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				recv := ""
				if d.Recv != nil {
					rt := typeString(d.Recv.List[0].Type)
					if !ast.IsExported(strings.TrimPrefix(rt, "*")) {
						continue // a method of an unexported type
					}
					recv = "(" + rt + ") "
				}
				api = append(api, "func "+recv+d.Name.Name+signature(d.Type))
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							api = append(api, "type "+s.Name.Name)
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								api = append(api, d.Tok.String()+" "+n.Name)
							}
						}
					}
				}
			}
		}
	}
	if len(api) == 0 {
		t.Fatalf("%s: no exported declarations found", goos)
	}
	return api
}

// signature writes a function type's parameter and result types, without
// their names.
func signature(ft *ast.FuncType) string {
	list := func(fl *ast.FieldList) string {
		if fl == nil {
			return "()"
		}
		var ts []string
		for _, f := range fl.List {
			n := max(len(f.Names), 1)
			for range n {
				ts = append(ts, typeString(f.Type))
			}
		}
		return "(" + strings.Join(ts, ", ") + ")"
	}
	return list(ft.Params) + " " + list(ft.Results)
}

// typeString writes a type expression as source.
func typeString(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.StarExpr:
		return "*" + typeString(e.X)
	case *ast.SelectorExpr:
		return typeString(e.X) + "." + e.Sel.Name
	case *ast.ArrayType:
		return "[]" + typeString(e.Elt)
	case *ast.Ellipsis:
		return "..." + typeString(e.Elt)
	case *ast.FuncType:
		return "func" + signature(e)
	case *ast.MapType:
		return "map[" + typeString(e.Key) + "]" + typeString(e.Value)
	case *ast.InterfaceType:
		return "interface{...}"
	}
	return "?"
}
