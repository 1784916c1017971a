//! How deep a query may nest. The parser, the compiler and the evaluator recurse, on threads
//! with tokio's 2 MiB stacks: a 2 KB query of 1,000 nested parentheses (or a chain of 1,000
//! `+`) overflowed one and aborted the whole process, and a chain of 50,000 `+` would take the
//! parser about 50 s (175 ms at 3,000: its time grows with the square of a chain's length). So a query is measured before it is parsed (its brackets
//! and operators, in one cheap scan) and after (its tree's depth, walked without recursion),
//! and refused past these limits with an error that names them. Prometheus has none (Go's
//! stacks grow); the dashboard's and the compliance set's queries are far within them (their
//! differential tests run every one).

use promql_parser::parser::Expr as Ast;

use super::CompileError;

/// The deepest expression tree compiled (each function, aggregation, operator and
/// parenthesis is a level). Measured on an unoptimised build and a 2 MiB stack: at 128 levels
/// every kind compiles and evaluates, at 256 one overflows; this is half the 128, for the
/// frames already on a thread's stack when it compiles or evaluates
/// (`promql::eval::tests::the_deepest_queries_allowed_run` runs each kind at this depth).
pub const MAX_DEPTH: usize = 64;

/// The most binary and unary operators a query may hold (a long chain is parsed in time that
/// grows with its square: 2,048 take under 100 ms, unoptimised).
pub const MAX_OPERATORS: usize = 2_048;

/// Refuses a text whose brackets nest deeper than [`MAX_DEPTH`] or that holds more than
/// [`MAX_OPERATORS`] operators, before the parser sees it. Strings and comments are skipped;
/// matchers inside `{}` are not operators.
pub fn check_text(text: &str) -> Result<(), CompileError> {
    let (mut depth, mut deepest, mut braces, mut operators) = (0usize, 0usize, 0usize, 0usize);
    let mut chars = text.char_indices().peekable();
    let mut in_word = false;
    while let Some((i, c)) = chars.next() {
        let word_char = c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '.';
        if word_char && !in_word {
            // A keyword operator is a whole word.
            let rest = &text[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let word = &rest[..end];
            if braces == 0
                && ["and", "or", "unless", "atan2"]
                    .iter()
                    .any(|k| word.eq_ignore_ascii_case(k))
            {
                operators += 1;
            }
        }
        in_word = word_char;
        match c {
            '"' | '\'' | '`' => {
                // To the closing quote (backslash escapes but in backticks).
                let mut escaped = false;
                for (_, d) in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' && c != '`' {
                        escaped = true;
                    } else if d == c {
                        break;
                    }
                }
            }
            '#' => {
                for (_, d) in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
                braces += usize::from(c == '{');
            }
            ')' | ']' | '}' => {
                depth = depth.saturating_sub(1);
                braces = braces.saturating_sub(usize::from(c == '}'));
            }
            '+' | '-' | '*' | '/' | '%' | '^' | '=' | '!' | '<' | '>' if braces == 0 => {
                // A run of operator characters (`==`, `<=`, `!=`) is one operator.
                while chars.next_if(|(_, d)| "=<>!~".contains(*d)).is_some() {}
                operators += 1;
            }
            _ => {}
        }
    }
    if deepest > MAX_DEPTH {
        return Err(CompileError(format!(
            "the query nests {deepest} brackets deep; at most {MAX_DEPTH} are evaluated"
        )));
    }
    if operators > MAX_OPERATORS {
        return Err(CompileError(format!(
            "the query holds {operators} operators; at most {MAX_OPERATORS} are evaluated"
        )));
    }
    Ok(())
}

/// Refuses a parsed expression deeper than [`MAX_DEPTH`] (walked with a stack of its own).
pub fn check_tree(ast: &Ast) -> Result<(), CompileError> {
    let mut todo = vec![(ast, 1usize)];
    while let Some((node, depth)) = todo.pop() {
        if depth > MAX_DEPTH {
            return Err(CompileError(format!(
                "the query's expression is more than {MAX_DEPTH} levels deep (operators, functions, aggregations and parentheses each count one)"
            )));
        }
        let next = depth + 1;
        match node {
            Ast::Aggregate(a) => {
                todo.push((&a.expr, next));
                todo.extend(a.param.iter().map(|p| (&**p, next)));
            }
            Ast::Unary(u) => todo.push((&u.expr, next)),
            Ast::Binary(b) => todo.extend([(&*b.lhs, next), (&*b.rhs, next)]),
            Ast::Paren(p) => todo.push((&p.expr, next)),
            Ast::Subquery(s) => todo.push((&s.expr, next)),
            Ast::Call(c) => todo.extend(c.args.args.iter().map(|a| (&**a, next))),
            Ast::NumberLiteral(_)
            | Ast::StringLiteral(_)
            | Ast::VectorSelector(_)
            | Ast::MatrixSelector(_)
            | Ast::Extension(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_and_operators_are_counted_outside_strings_and_matchers() {
        let parens = |n| format!("{}1{}", "(".repeat(n), ")".repeat(n));
        assert!(check_text(&parens(MAX_DEPTH)).is_ok());
        let deep = check_text(&parens(MAX_DEPTH + 1)).unwrap_err();
        assert!(deep.0.contains("65 brackets"), "{deep}");
        // Brackets and operators inside strings, regexes and comments do not count.
        let quoted = format!(
            "up{{a=~\"{}\", b!='{}'}} # {}\n",
            "(+".repeat(3000),
            "\\'[".repeat(3000),
            "((".repeat(3000)
        );
        assert!(check_text(&quoted).is_ok());
        let chain = format!("{}1", "1 + ".repeat(MAX_OPERATORS));
        assert!(check_text(&chain).is_ok());
        let chain = format!("{}1", "1 <= ".repeat(MAX_OPERATORS + 1));
        assert!(check_text(&chain).unwrap_err().0.contains("2049 operators"));
        let words = format!("{}a", "a or ".repeat(MAX_OPERATORS + 1));
        assert!(check_text(&words).is_err());
        assert!(check_text(&format!("{}a", "a_or_b + ".repeat(10))).is_ok());
    }
}
