using System.Security.Cryptography;
using System.Text;
using TcStudio.SystemDatabase.Ssh;

namespace TcStudio.UnitTests.Ssh;

/// <summary>known_hosts lines as OpenSSH writes them: bracketed ports, host lists, hashed names, @revoked.</summary>
public sealed class KnownHostsTests : IDisposable
{
    private readonly string _path = Path.GetTempFileName();
    private static readonly byte[] Key = RandomNumberGenerator.GetBytes(51);
    private static readonly byte[] OtherKey = RandomNumberGenerator.GetBytes(51);

    public void Dispose() => File.Delete(_path);

    private KnownHosts.Verdict Check(string content, string host, int port, byte[] key)
    {
        File.WriteAllText(_path, content);
        return KnownHosts.Check(_path, host, port, key);
    }

    [Fact]
    public void Port_22_is_written_bare_and_others_in_brackets()
    {
        var key = Convert.ToBase64String(Key);
        Assert.Equal(KnownHosts.Verdict.Known, Check($"bastion.example ssh-ed25519 {key}\n", "bastion.example", 22, Key));
        Assert.Equal(KnownHosts.Verdict.Unknown, Check($"bastion.example ssh-ed25519 {key}\n", "bastion.example", 2222, Key));
        Assert.Equal(KnownHosts.Verdict.Known, Check($"# comment\n[bastion.example]:2222 ssh-ed25519 {key}\n", "bastion.example", 2222, Key));
        Assert.Equal(KnownHosts.Verdict.Known, Check($"other,BASTION.example ssh-ed25519 {key}\n", "bastion.example", 22, Key));
    }

    [Fact]
    public void A_different_key_for_a_known_host_is_a_change_and_a_revoked_key_is_refused()
    {
        var key = Convert.ToBase64String(Key);
        Assert.Equal(KnownHosts.Verdict.Changed, Check($"bastion ssh-ed25519 {Convert.ToBase64String(OtherKey)}\n", "bastion", 22, Key));
        Assert.Equal(KnownHosts.Verdict.Revoked, Check($"@revoked * ssh-ed25519 {key}\nbastion ssh-ed25519 {key}\n", "bastion", 22, Key));
        Assert.Equal(KnownHosts.Verdict.Unknown, Check($"@cert-authority bastion ssh-ed25519 {key}\n", "bastion", 22, Key));
    }

    [Fact]
    public void Hashed_host_names_match()
    {
        var salt = RandomNumberGenerator.GetBytes(20);
        using var hmac = new HMACSHA1(salt);
        var hash = hmac.ComputeHash(Encoding.ASCII.GetBytes("[10.0.0.5]:2200"));
        var line = $"|1|{Convert.ToBase64String(salt)}|{Convert.ToBase64String(hash)} ssh-ed25519 {Convert.ToBase64String(Key)}\n";
        Assert.Equal(KnownHosts.Verdict.Known, Check(line, "10.0.0.5", 2200, Key));
        Assert.Equal(KnownHosts.Verdict.Unknown, Check(line, "10.0.0.6", 2200, Key));
    }

    [Fact]
    public void A_missing_file_knows_no_host() =>
        Assert.Equal(KnownHosts.Verdict.Unknown, KnownHosts.Check(_path + ".missing", "bastion", 22, Key));

    [Theory]
    [InlineData("db.internal,1433", "db.internal", 1433)]
    [InlineData("tcp:db.internal", "db.internal", 1433)]
    [InlineData(@"db\SQLEXPRESS,14330", "db", 14330)]
    public void A_SQL_Server_data_source_names_the_host_and_port_the_bastion_connects_to(string dataSource, string host, int port) =>
        Assert.Equal((host, port), SshTunnels.SplitSqlServerDataSource(dataSource));

    [Fact]
    public void A_named_instance_without_a_port_cannot_be_tunnelled() =>
        Assert.Null(SshTunnels.SplitSqlServerDataSource(@"db\SQLEXPRESS"));
}
