using System.Text;

namespace TcStudio.UnitTests.Conventions;

/// <summary>
/// Conventions the build cannot check: Roslyn does not enforce .editorconfig's <c>max_line_length</c>, so this test
/// does. Generated EF migrations are exempt (they are regenerated, not edited).
/// </summary>
public sealed class CodeConventionTests
{
    private const int MaxLineLength = 150;
    private const int OffendersListed = 20;

    [Fact]
    public void No_CSharp_line_is_longer_than_150_characters()
    {
        var root = RepositoryRoot();

        var offenders = FindLongLines(root).ToList();

        Assert.True(offenders.Count == 0,
            $"{offenders.Count} line(s) longer than {MaxLineLength} characters (wrap them; see .editorconfig):\n"
            + string.Join("\n", offenders.Take(OffendersListed).Select(o => $"{o.Path}:{o.Line} ({o.Length})"))
            + (offenders.Count > OffendersListed ? $"\n... and {offenders.Count - OffendersListed} more" : ""));
    }

    [Fact]
    public void The_check_finds_a_long_line_and_skips_build_output_and_migrations()
    {
        var root = Directory.CreateTempSubdirectory("tcstudio-conventions-").FullName;
        try
        {
            var fits = new string('x', MaxLineLength - 1) + "…"; // 150 characters, 152 bytes in UTF-8
            var tooLong = new string('y', MaxLineLength + 1);
            Write(root, "Project/Fine.cs", $"// short\n{fits}\n");
            Write(root, "Project/Long.cs", $"// short\n// short\n{tooLong}\n");
            Write(root, "Project/bin/Debug/Generated.cs", tooLong);
            Write(root, "Project/obj/Generated.cs", tooLong);
            Write(root, "Project/Migrations/20260101000000_Initial.cs", tooLong);

            var offenders = FindLongLines(root);

            var offender = Assert.Single(offenders);
            Assert.Equal(("Project/Long.cs", 3, MaxLineLength + 1), (offender.Path, offender.Line, offender.Length));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private sealed record LongLine(string Path, int Line, int Length);

    /// <summary>
    /// Every line of every *.cs file under <paramref name="root"/> longer than the limit, outside bin/, obj/,
    /// Migrations/ and hidden folders. Length counts characters (Unicode scalar values), as <c>awk length</c> does in a
    /// UTF-8 locale; paths are relative, with forward slashes.
    /// </summary>
    private static List<LongLine> FindLongLines(string root)
    {
        var offenders = new List<LongLine>();
        foreach (var file in Directory.EnumerateFiles(root, "*.cs", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            var path = Path.GetRelativePath(root, file).Replace('\\', '/');
            var folders = path.Split('/')[..^1];
            if (folders.Any(f => f is "bin" or "obj" or "Migrations" || f.StartsWith('.'))) continue;

            var lines = File.ReadAllText(file, Encoding.UTF8).Split('\n');
            for (var i = 0; i < lines.Length; i++)
            {
                var length = lines[i].EnumerateRunes().Count();
                if (length > MaxLineLength) offenders.Add(new LongLine(path, i + 1, length));
            }
        }
        return offenders;
    }

    private static string RepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "TcStudio.sln"))) return directory.FullName;
        }
        throw new InvalidOperationException($"No TcStudio.sln above {AppContext.BaseDirectory}: run the tests from a checkout.");
    }

    private static void Write(string root, string relativePath, string text)
    {
        var path = Path.Combine(root, relativePath);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false));
    }
}
